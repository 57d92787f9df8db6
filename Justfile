# Every experiment and chore as a recipe. `uv run just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Score the bundled example runs and print the side-by-side report.
demo:
    uv run or-score tests/fixtures/score/run_base.jsonl -q > /tmp/calm-storm-demo-base.jsonl
    uv run or-score tests/fixtures/score/run_storm.jsonl -q > /tmp/calm-storm-demo-storm.jsonl
    uv run or-score report /tmp/calm-storm-demo-base.jsonl /tmp/calm-storm-demo-storm.jsonl --label base --label STORM --format markdown

# The whole test suite (GPU tests skip themselves without a GPU).
test *ARGS:
    uv run pytest -q {{ARGS}}

lint:
    uv run ruff check .
    uv run ruff format --check .

# Performance figures (ratios against baselines measured in the same run).
bench SIZE_MB="1024":
    uv run python bench/exec.py --rounds 3
    uv run python bench/score.py --size-mb {{SIZE_MB}}

# Download the public test sets into data/ (needs internet; see recipes/download-benchmarks.sh).
data:
    bash recipes/download-benchmarks.sh
