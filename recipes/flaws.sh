#!/usr/bin/env bash
# Figures 2 and 7 (flaws): the distribution of flaw triggers and categories per benchmark for
# each evaluated run (by default the ablation's base, CALM-SFT and STORM runs), so the
# evolution base -> CALM-SFT -> STORM reads across the reports.
#
#   RUNS="base=runs/ablation/base calm-sft=runs/ablation/calm-sft storm=runs/ablation/storm" \
#       ANNOTATOR=rules bash recipes/flaws.sh [extra or-annotate flags]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

RUNS=${RUNS:-"base=runs/ablation/base calm-sft=runs/ablation/calm-sft storm=runs/ablation/storm"}
ANNOTATOR=${ANNOTATOR:-rules}   # or a judge model, e.g. gemini/gemini-2.5-pro
OUT=${OUT:-runs/flaws}
mkdir -p "$OUT"
stamp "$OUT" annotator="$ANNOTATOR"

annotator=()
[ "$ANNOTATOR" != rules ] && annotator=(--annotator "$ANNOTATOR")
for spec in $RUNS; do
    label=${spec%%=*} dir=${spec#*=}
    stage "annotate-$label" "$OUT" or-annotate "$dir/scored.jsonl" "${annotator[@]}" "$@" \
        -q -o "$OUT/$label.jsonl"
    or-annotate report "$OUT/$label.jsonl" --format markdown --plot "$OUT/$label.png" > "$OUT/$label.md"
    { echo "## $label"; cat "$OUT/$label.md"; echo; } >> "$OUT/.flaws.md"
done
mv "$OUT/.flaws.md" "$OUT/flaws.md"
cat "$OUT/flaws.md"
