#!/usr/bin/env bash
# CALM data curation: generate on the SFT problems, let the Intervener hint at each flaw, keep
# the golden trajectories (correct and flawless), one per problem, within the SFT length.
#
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 \
#   INTERVENER=gemini/gemini-2.5-pro SFT=splits/sft.jsonl bash recipes/calm.sh [extra flags for both]
#
# Extra flags go to or-gen and or-intervene, except --limit N: it counts problems for or-gen,
# and or-intervene then takes every trajectory or-gen wrote (N problems x N samples).
set -euo pipefail

MODEL=${MODEL:?set MODEL (the served Reasoner)}
API_BASE=${API_BASE:-http://127.0.0.1:8000/v1}
INTERVENER=${INTERVENER:-gemini/gemini-2.5-pro}
INTERVENER_API_BASE=${INTERVENER_API_BASE:-}  # for a self-hosted Intervener (openai/NAME)
SFT=${SFT:-splits/sft.jsonl}
OUT=${OUT:-runs/calm}
N=${N:-8}
MAX_TOKENS=${MAX_TOKENS:-22000}
TOKENIZER=${TOKENIZER:-$MODEL}
mkdir -p "$OUT"

LATER=()  # the extra flags without --limit, for the stages after or-gen
skip=0
for arg in "$@"; do
    if ((skip)); then skip=0; continue; fi
    case "$arg" in
        --limit) skip=1 ;;
        --limit=*) ;;
        *) LATER+=("$arg") ;;
    esac
done

or-gen "$SFT" --model "$MODEL" --api-base "$API_BASE" --n "$N" -o "$OUT/01-gen.jsonl" --resume "$@"
or-intervene "$OUT/01-gen.jsonl" --intervener "$INTERVENER" ${INTERVENER_API_BASE:+--intervener-api-base "$INTERVENER_API_BASE"} \
    --model "$MODEL" --api-base "$API_BASE" -o "$OUT/02-calm.jsonl" --resume --stats "$OUT/02-funnel.json" \
    ${LATER[@]+"${LATER[@]}"}
or-filter "$OUT/02-calm.jsonl" --golden --max-tokens "$MAX_TOKENS" --tokenizer "$TOKENIZER" \
    --one-per-problem --rejects "$OUT/03-rejects.jsonl" --stats "$OUT/03-funnel.json" > "$OUT/03-golden.jsonl"
echo "golden trajectories: $(wc -l < "$OUT/03-golden.jsonl") in $OUT/03-golden.jsonl" >&2
