#!/usr/bin/env bash
# Evaluate a model the paper's way: 8 samples per problem at temperature 0.6 / top-p 0.95,
# code execution inside the reasoning, strict scoring, a per-benchmark report.
#
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 TEST=splits/test.jsonl \
#       bash recipes/eval.sh [extra or-gen flags]
set -euo pipefail

MODEL=${MODEL:?set MODEL (the served model name or a path)}
API_BASE=${API_BASE:-http://127.0.0.1:8000/v1}
TEST=${TEST:-splits/test.jsonl}
OUT=${OUT:-runs/eval}
N=${N:-8}
PROTOCOL=${PROTOCOL:-strict}
mkdir -p "$OUT"

or-gen "$TEST" --model "$MODEL" --api-base "$API_BASE" --n "$N" -o "$OUT/01-gen.jsonl" --resume "$@"
# An empty run must not pass for a result: or-score report fails on a run without records too.
if [ ! -s "$OUT/01-gen.jsonl" ]; then
    echo "eval.sh: generation wrote no trajectory to $OUT/01-gen.jsonl (is $TEST empty?)" >&2
    exit 1
fi
or-score "$OUT/01-gen.jsonl" --protocol "$PROTOCOL" -q > "$OUT/02-scored.jsonl"
or-score report "$OUT/02-scored.jsonl" --protocol "$PROTOCOL" --format markdown --plot "$OUT/report.png" > "$OUT/report.md"
cat "$OUT/report.md"
