"""or-gen."""
