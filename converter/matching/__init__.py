"""Matching a sound: the resynthesis, the model's patch, the one comparison that ranks candidates,
and the search that refines the best."""
