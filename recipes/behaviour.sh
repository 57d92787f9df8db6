#!/usr/bin/env bash
# Figure 6 (RL behaviour): GRPO from the base model and from the CALM-SFT checkpoint on the same
# RL problems (each run is recipes/verl/grpo.sh), then accuracy, code blocks and response
# length per step side by side. Flaws before and after come from recipes/flaws.sh on the
# evaluated checkpoints. DRY_RUN=1 prints the two verl commands without training.
#
#   BASE=Qwen/Qwen3-4B-Thinking-2507 SFT=ckpt/sft RL=splits/rl.jsonl VAL=splits/test.jsonl \
#       bash recipes/behaviour.sh [extra verl key=value overrides]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
here=$(dirname "$0")

BASE=${BASE:-Qwen/Qwen3-4B-Thinking-2507}
SFT=${SFT:?set SFT (the CALM-SFT checkpoint)}
RL=${RL:-splits/rl.jsonl}
VAL=${VAL:-splits/test.jsonl}
OUT=${OUT:-runs/behaviour}
mkdir -p "$OUT"
stamp "$OUT" base="$BASE" sft="$SFT" rl="$RL" val="$VAL"

train_stage rl-from-base "$OUT" env MODEL="$BASE" RL="$RL" VAL="$VAL" OUT="$OUT/from-base" \
    bash "$here/verl/grpo.sh" "$@"
train_stage rl-from-calm-sft "$OUT" env MODEL="$SFT" RL="$RL" VAL="$VAL" OUT="$OUT/from-calm-sft" \
    bash "$here/verl/grpo.sh" "$@"
if [ -z "${DRY_RUN:-}" ]; then
    or-grpo plot "$OUT/from-base/02-grpo" "$OUT/from-calm-sft/02-grpo" -o "$OUT/behaviour.png"
    echo "curves: $OUT/behaviour.png" >&2
fi
