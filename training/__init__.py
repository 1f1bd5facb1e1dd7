"""Dataset generation, model training and evaluation (needs the [train] extra)."""
