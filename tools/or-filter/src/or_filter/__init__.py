"""or-filter."""
