#!/usr/bin/env bash
# Figure 5 (the CALM funnel): run the CALM curation (recipes/calm.sh, same knobs) and keep its
# funnel: correct -> golden counts, success before/after hints, hints per problem, response
# tokens before/after, in OUT/funnel.md (rendered from OUT/02-funnel.json and OUT/03-funnel.json).
#
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 \
#       INTERVENER=gemini/gemini-2.5-pro SFT=splits/sft.jsonl bash recipes/funnel.sh [extra flags]
set -euo pipefail

export OUT=${OUT:-runs/calm}
mkdir -p "$OUT"
here=$(dirname "$0")
bash "$here/calm.sh" "$@" 2> >(tee "$OUT/calm.log" >&2)
wait
# the funnels the two tools wrote with --stats (recipes/calm.sh), as they said them on stderr
python "$here/render_funnel.py" "$OUT/02-funnel.json" "$OUT/03-funnel.json" > "$OUT/funnel.md"
cat "$OUT/funnel.md"
