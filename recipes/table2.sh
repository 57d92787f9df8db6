#!/usr/bin/env bash
# Table 2 (main results): pass@1 over N samples per problem on the five headline benchmarks and
# their macro average, several models side by side (markdown + PNG), each run stamped.
#
#   MODELS="base=Qwen/Qwen3-4B-Thinking-2507@http://127.0.0.1:8000/v1 storm=ckpt/storm" \
#       TEST=splits/test.jsonl bash recipes/table2.sh [extra or-gen flags]
#
# A model is LABEL=MODEL@API_BASE (a served model) or LABEL=PATH (run in-process with $BACKEND).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

MODELS=${MODELS:?set MODELS to "label=model[@api_base] ..."}
TEST=${TEST:-splits/test.jsonl}
OUT=${OUT:-runs/table2}
BENCHMARKS=${BENCHMARKS:-"NL4Opt MAMO-Easy MAMO-Complex IndustryOR OptMath"}
mkdir -p "$OUT"

benchmark_flags=()
for b in $BENCHMARKS; do benchmark_flags+=(--benchmark "$b"); done
or-filter "$TEST" "${benchmark_flags[@]}" -q -o "$OUT/test.jsonl"

dirs=()
for spec in $MODELS; do
    label=${spec%%=*}
    evaluate "$label" "${spec#*=}" "$OUT/test.jsonl" "$OUT/$label" "$@"
    dirs+=("$OUT/$label")
done
side_by_side "$OUT/table2" "${dirs[@]}"
