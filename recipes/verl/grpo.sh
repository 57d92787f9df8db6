#!/usr/bin/env bash
# Stage 2 of the paper: GRPO with code execution in the rollout, from the CALM-SFT checkpoint
# to STORM, then the RL behaviour curves (accuracy, code blocks, response length per step) and
# the final checkpoint in Hugging Face format. Runs on a GPU node with `uv sync --extra gpu`;
# on a Ray cluster, start Ray on every node first and set NNODES (see docs/or-grpo.md).
#
#   MODEL=ckpt/calm-sft RL=splits/rl.jsonl VAL=splits/test.jsonl bash recipes/verl/grpo.sh \
#       [extra verl key=value overrides]
# DRY_RUN=1 prepares the data and prints the verl command without training.
set -euo pipefail

MODEL=${MODEL:?set MODEL (the CALM-SFT checkpoint)}
RL=${RL:-splits/rl.jsonl}
VAL=${VAL:-splits/test.jsonl}
OUT=${OUT:-runs/storm}
NNODES=${NNODES:-1}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
SANDBOX=${SANDBOX:-local}          # or http://HOST:PORT of `or-exec serve`
DRY_RUN=${DRY_RUN:-}
mkdir -p "$OUT"

# 01: verl's parquet (problems without an answer are reported and left out)
or-grpo prepare "$RL" -o "$OUT/01-data" --val "$VAL" || [ $? -eq 1 ]

# 02: GRPO (reference settings are or-grpo's defaults)
train=(or-grpo train "$OUT/01-data" --model "$MODEL" -o "$OUT/02-grpo" --sandbox "$SANDBOX"
       --nnodes "$NNODES" --gpus-per-node "$GPUS_PER_NODE" "$@")
if [ -n "$DRY_RUN" ]; then
    "${train[@]}" --dry-run
    exit 0
fi
"${train[@]}"

# 03: behaviour curves and the final checkpoint
or-grpo plot "$OUT/02-grpo" -o "$OUT/03-curves.png"
or-grpo export "$OUT/02-grpo" -o "$OUT/03-storm"
echo "STORM checkpoint: $OUT/03-storm; curves: $OUT/03-curves.png" >&2
