"""or-exec."""
