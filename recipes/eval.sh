#!/usr/bin/env bash
# Evaluate one model the paper's way (recipes/lib.sh `evaluate`, as every recipe does): N=8
# samples per problem at temperature 0.6 / top-p 0.95, code execution inside the reasoning,
# strict scoring, a per-benchmark report (OUT/report.md and .png) and a stamp.
#
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 TEST=splits/test.jsonl \
#       bash recipes/eval.sh [extra or-gen flags]
#   MODEL=ckpt/storm API_BASE= BACKEND=vllm bash recipes/eval.sh     # in-process, no server
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODEL=${MODEL:?set MODEL (the served model name or a path)}
API_BASE=${API_BASE-http://127.0.0.1:8000/v1}
TEST=${TEST:-splits/test.jsonl}
OUT=${OUT:-runs/eval}
LABEL=${LABEL:-$(basename "$MODEL")}

evaluate "$LABEL" "$MODEL${API_BASE:+@$API_BASE}" "$TEST" "$OUT" "$@"
side_by_side "$OUT/report" "$OUT"
