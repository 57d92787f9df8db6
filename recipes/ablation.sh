#!/usr/bin/env bash
# Figure 4 (two-stage ablation): accuracy of the base model, after CALM-SFT, and after GRPO
# (STORM), on the same test set: Table 2's recipe with those three models.
#
#   BASE=Qwen/Qwen3-4B-Thinking-2507@http://127.0.0.1:8000/v1 SFT=ckpt/sft STORM=ckpt/storm \
#       bash recipes/ablation.sh [extra or-gen flags]
set -euo pipefail

BASE=${BASE:?set BASE (the base model: path, hub name, or name@api_base)}
SFT=${SFT:?set SFT (the CALM-SFT checkpoint)}
STORM=${STORM:?set STORM (the checkpoint after GRPO)}
export OUT=${OUT:-runs/ablation}
MODELS="base=$BASE calm-sft=$SFT storm=$STORM" exec bash "$(dirname "$0")/table2.sh" "$@"
