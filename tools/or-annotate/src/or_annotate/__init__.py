"""or-annotate."""
