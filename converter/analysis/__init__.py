"""Analysis of the user's input: reading and checking it, its note, and the model's view of it."""
