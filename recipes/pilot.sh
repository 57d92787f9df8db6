#!/usr/bin/env bash
# Table 1 (pilot): the base model against the same model after SFT on non-reflective
# OR-Instruct-style answers (one reasoner segment, no code execution), on the five benchmarks.
#
#   BASE=Qwen/Qwen3-4B-Thinking-2507 PILOT_DATA=../shared/data/train_or_instruct_sample100.jsonl \
#       bash recipes/pilot.sh [extra or-sft flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BASE=${BASE:-Qwen/Qwen3-4B-Thinking-2507}
PILOT_DATA=${PILOT_DATA:-../shared/data/train_or_instruct_sample100.jsonl}
TEST=${TEST:-splits/test.jsonl}
OUT=${OUT:-runs/pilot}
SFT_TOKENIZER=${SFT_TOKENIZER:-${TOKENIZER:-${BASE%%@*}}}
mkdir -p "$OUT"
stamp "$OUT" base="${BASE%%@*}" pilot_data="$PILOT_DATA"

stage convert "$OUT" python "$(dirname "$0")/or_instruct_to_trajectories.py" "$PILOT_DATA" \
    -o "$OUT/01-sft-data.jsonl"
stage sft "$OUT" or-sft "$OUT/01-sft-data.jsonl" --model "${BASE%%@*}" --tokenizer "$SFT_TOKENIZER" \
    -o "$OUT/02-ckpt" "$@"
MODELS="base=$BASE pilot-sft=$OUT/02-ckpt" OUT="$OUT/03-eval" TEST="$TEST" \
    bash "$(dirname "$0")/table2.sh"
