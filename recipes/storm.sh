#!/usr/bin/env bash
# STORM end to end: splits -> CALM curation -> SFT -> GRPO and export (recipes/verl/grpo.sh)
# -> evaluation of base, CALM-SFT and STORM side by side. Every stage is resumable: rerun the
# same command after a stop. DRY_RUN=1 stops after printing the GRPO command (GRPO is then not
# marked done). Knobs of the stages pass through: SPLITS (recipes/split.sh), N, MAX_TOKENS and
# TOKENIZER (recipes/calm.sh), EVAL_MAX_TOKENS (the evaluation's budget); extra flags go to the
# evaluation (recipes/ablation.sh).
#
#   BASE=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 (the served base, for CALM)
#   INTERVENER=gemini/gemini-2.5-pro DATA=../shared/data bash recipes/storm.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"
here=$(dirname "$0")

BASE=${BASE:-Qwen/Qwen3-4B-Thinking-2507}
API_BASE=${API_BASE:?set API_BASE (a server of the base model, for CALM generation)}
INTERVENER=${INTERVENER:-gemini/gemini-2.5-pro}
DATA=${DATA:-../shared/data}
OUT=${OUT:-runs/storm}
# flags split on spaces (no quoted values with spaces in them)
CALM_FLAGS=${CALM_FLAGS:-}   # or-gen / or-intervene flags, e.g. "--limit 100 --max-tokens 16384"
SFT_FLAGS=${SFT_FLAGS:-}     # e.g. "--max-steps 10" for a smoke run
GRPO_FLAGS=${GRPO_FLAGS:-}   # e.g. "trainer.n_gpus_per_node=8 trainer.nnodes=2"
mkdir -p "$OUT"
stamp "$OUT" base="$BASE" data="$DATA" intervener="$INTERVENER"

stage splits "$OUT" env DATA="$DATA" OUT="$OUT/splits" bash "$here/split.sh"
# shellcheck disable=SC2086
stage calm "$OUT" env MODEL="$BASE" API_BASE="$API_BASE" INTERVENER="$INTERVENER" \
    SFT="$OUT/splits/sft.jsonl" OUT="$OUT/calm" bash "$here/funnel.sh" $CALM_FLAGS
# shellcheck disable=SC2086
stage sft "$OUT" or-sft "$OUT/calm/03-golden.jsonl" --model "$BASE" -o "$OUT/sft" $SFT_FLAGS
# shellcheck disable=SC2086
train_stage grpo "$OUT" env MODEL="$OUT/sft" RL="$OUT/splits/rl.jsonl" \
    VAL="$OUT/splits/test.jsonl" OUT="$OUT/grpo" bash "$here/verl/grpo.sh" $GRPO_FLAGS
if [ -n "${DRY_RUN:-}" ]; then
    echo "DRY_RUN: GRPO was not run, so there is no STORM checkpoint to evaluate" >&2
    exit 0
fi
# MAX_TOKENS above is CALM's SFT length; the evaluation's budget is EVAL_MAX_TOKENS (or-gen's
# default when unset)
BASE="$BASE@$API_BASE" SFT="$OUT/sft" STORM="$OUT/grpo/03-storm" OUT="$OUT/eval" \
    TEST="$OUT/splits/test.jsonl" MAX_TOKENS="${EVAL_MAX_TOKENS:-}" bash "$here/ablation.sh" "$@"
