"""Shared library of the calm-storm tools: records, JSONL streams, CLI options, scoring."""

import os

# transformers prints "PyTorch was not found..." at import when torch is absent, even under -q;
# the tools only load tokenizers from it. Every tool imports or_common before transformers, so
# this is the one place that silences the advisory for all of them (a user's own value wins).
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
