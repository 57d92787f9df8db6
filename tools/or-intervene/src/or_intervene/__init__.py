"""or-intervene."""
