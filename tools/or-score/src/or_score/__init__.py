"""or-score."""
