"""or-grpo."""
