"""or-sft."""
