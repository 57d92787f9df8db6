#!/usr/bin/env bash
# Figure 6 (RL behaviour): GRPO from the base model and from the CALM-SFT checkpoint on the same
# RL problems; accuracy, code blocks and response length per step, side by side. Flaws before and
# after come from recipes/flaws.sh on the evaluated checkpoints.
#
#   BASE=Qwen/Qwen3-4B-Thinking-2507 SFT=ckpt/sft RL=splits/rl.jsonl VAL=splits/test.jsonl \
#       bash recipes/behaviour.sh [extra or-grpo train flags or key=value overrides]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BASE=${BASE:-Qwen/Qwen3-4B-Thinking-2507}
SFT=${SFT:?set SFT (the CALM-SFT checkpoint)}
RL=${RL:-splits/rl.jsonl}
VAL=${VAL:-splits/test.jsonl}
OUT=${OUT:-runs/behaviour}
mkdir -p "$OUT"
stamp "$OUT" base="$BASE" sft="$SFT" rl="$RL" val="$VAL"

stage prepare "$OUT" or-grpo prepare "$RL" -o "$OUT/data"
stage rl-from-base "$OUT" or-grpo train "$OUT/data" --model "$BASE" --val "$VAL" -o "$OUT/rl-from-base" "$@"
stage rl-from-calm-sft "$OUT" or-grpo train "$OUT/data" --model "$SFT" --val "$VAL" -o "$OUT/rl-from-calm-sft" "$@"
if [ -s "$OUT/rl-from-base/metrics.jsonl" ]; then
    or-grpo plot "$OUT/rl-from-base" "$OUT/rl-from-calm-sft" -o "$OUT/behaviour.png"
fi
