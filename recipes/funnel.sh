#!/usr/bin/env bash
# Figure 5 (the CALM funnel): run the CALM curation (recipes/calm.sh, same knobs) and keep its
# funnel: correct -> golden counts, success before/after hints, hints per problem, response
# tokens before/after, in OUT/funnel.md.
#
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 \
#       INTERVENER=gemini/gemini-2.5-pro SFT=splits/sft.jsonl bash recipes/funnel.sh [extra flags]
set -euo pipefail

export OUT=${OUT:-runs/calm}
mkdir -p "$OUT"
bash "$(dirname "$0")/calm.sh" "$@" 2> >(tee "$OUT/calm.log" >&2)
wait
{
    echo "# CALM funnel"
    echo
    echo '```'
    # each funnel: its header line and the indented lines under it
    awk '/^or-intervene funnel/ {on = 1; print; next} on && /^ / {print; next} {on = 0}' "$OUT/calm.log"
    awk '/^or-filter funnel/ {on = 1; print; next} on && /^ / {print; next} {on = 0}' "$OUT/calm.log"
    echo '```'
} > "$OUT/funnel.md"
cat "$OUT/funnel.md"
