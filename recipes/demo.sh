#!/usr/bin/env bash
# The whole pipeline, for real, offline, in minutes (`just demo`). Every stage's output lands in
# $OUT, with a report.md that links them.
#
#   1. or-exec doctor: the sandbox's protections on this machine
#   2. data audit of the bundled sample (data/sample): cross-benchmark duplicates, conflicting labels
#   3. or-gen against a Reasoner: by default the *scripted stand-in* (recipes/demo/scripted_model.py,
#      not a model: hand-written text and PuLP code for five problems), served on 127.0.0.1
#   4. or-intervene (CALM) with the rules Intervener, then or-filter --golden: the funnel
#   5. or-sft: a few steps of a tiny randomly initialised Qwen3 (real tokenizer) on the golden
#      records, then or-gen from that checkpoint with the transformers backend (it scores ~0:
#      the point is the machinery, not the model)
#   6. or-score and or-annotate reports; or-view's page of the trajectories (view.html) and its lint
#
# A real served model instead of the stand-in:
#   MODEL=Qwen/Qwen3-4B-Thinking-2507 API_BASE=http://127.0.0.1:8000/v1 TOKENIZER=... just demo
set -euo pipefail

OUT=${OUT:-runs/demo}
DATA=${DATA:-data/sample}
TOKENIZER=${TOKENIZER:-tests/fixtures/qwen3-tokenizer}
MODEL=${MODEL:-}
API_BASE=${API_BASE:-}
INTERVENER=${INTERVENER:-rules}
N=${N:-2}
SFT_STEPS=${SFT_STEPS:-8}
MAX_TOKENS=${MAX_TOKENS:-4096}
here=$(cd "$(dirname "$0")" && pwd)

rm -rf "$OUT"
mkdir -p "$OUT/02-audit"
log() { printf '\n== %s\n' "$*" >&2; }

log "1. the sandbox"
or-exec doctor | tee "$OUT/01-doctor.txt" >&2

log "2. data audit of $DATA"
cat "$DATA"/*.jsonl > "$OUT/02-audit/problems.jsonl"
for file in "$DATA"/*.jsonl; do
    name=$(basename "$file" .jsonl)
    # every other benchmark of the sample is the reference for this one
    for other in "$DATA"/*.jsonl; do [ "$other" = "$file" ] || cat "$other"; done > "$OUT/02-audit/others-$name.jsonl"
    or-filter "$file" --decontaminate "$OUT/02-audit/others-$name.jsonl" --rejects "$OUT/02-audit/duplicates-$name.jsonl" -q > /dev/null
    rm "$OUT/02-audit/others-$name.jsonl"
done
cat "$OUT"/02-audit/duplicates-*.jsonl > "$OUT/02-audit/duplicates.jsonl"
rm "$OUT"/02-audit/duplicates-*.jsonl

# the problems the demo generates on: those of the stand-in's playbook, and one it does not know
python3 "$here/demo/pick_problems.py" "$OUT/02-audit/problems.jsonl" > "$OUT/problems.jsonl"

if [ -z "$MODEL" ]; then
    log "3. starting the scripted stand-in (not a model) on 127.0.0.1"
    MODEL=scripted-stand-in
    python "$here/demo/scripted_model.py" --tokenizer "$TOKENIZER" --port-file "$OUT/.port" 2> "$OUT/stand-in.log" &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    for _ in $(seq 1 120); do [ -s "$OUT/.port" ] && break; sleep 0.5; done
    [ -s "$OUT/.port" ] || { echo "the stand-in did not start: $(cat "$OUT/stand-in.log")" >&2; exit 1; }
    API_BASE="http://127.0.0.1:$(cat "$OUT/.port")/v1"
fi
reasoner=(--model "$MODEL" --api-base "$API_BASE" --tokenizer "$TOKENIZER" --max-tokens "$MAX_TOKENS")

log "3. or-gen: $N samples per problem from $MODEL"
or-gen "$OUT/problems.jsonl" "${reasoner[@]}" --n "$N" -o "$OUT/03-gen.jsonl" 2> "$OUT/03-gen.log"

log "4. or-intervene ($INTERVENER Intervener) and or-filter --golden"
# each writes its funnel with --stats (the report renders it) and says it on stderr, kept in a log
or-intervene "$OUT/03-gen.jsonl" --intervener "$INTERVENER" "${reasoner[@]}" -o "$OUT/04-calm.jsonl" \
    --stats "$OUT/04-funnel.json" 2> "$OUT/04-calm.log"
cat "$OUT/04-calm.log" >&2
or-filter "$OUT/04-calm.jsonl" --golden --one-per-problem --rejects "$OUT/05-rejects.jsonl" \
    -o "$OUT/05-golden.jsonl" --stats "$OUT/05-funnel.json" 2> "$OUT/05-golden.log"
cat "$OUT/05-golden.log" >&2

log "5. or-sft: $SFT_STEPS steps of a tiny random Qwen3 on the golden records"
python "$here/demo/tiny_model.py" -o "$OUT/06-tiny-init"
or-sft "$OUT/05-golden.jsonl" --model "$OUT/06-tiny-init" -o "$OUT/06-sft" --max-steps "$SFT_STEPS" \
    --max-length 4096 --global-batch 2 --per-device-batch 2 --lr 1e-3 --warmup 0 \
    --no-gradient-checkpointing --save-steps "$SFT_STEPS" 2>&1 | tee "$OUT/06-sft.log" >&2
or-gen "$OUT/problems.jsonl" --backend transformers --model "$OUT/06-sft" --n 1 --max-tokens 48 \
    -o "$OUT/07-tiny-gen.jsonl" 2> "$OUT/07-tiny-gen.log"

log "6. reports"
or-score "$OUT/03-gen.jsonl" -q > "$OUT/08-scored-gen.jsonl"
or-score "$OUT/04-calm.jsonl" -q > "$OUT/08-scored-calm.jsonl"
or-score "$OUT/07-tiny-gen.jsonl" -q > "$OUT/08-scored-tiny.jsonl"
label=$MODEL; [ "$MODEL" = scripted-stand-in ] && label="scripted stand-in (not a model)"
or-score report "$OUT/08-scored-gen.jsonl" "$OUT/08-scored-calm.jsonl" "$OUT/08-scored-tiny.jsonl" \
    --label "$label" --label "$label + CALM hints" --label "tiny random Qwen3 after $SFT_STEPS SFT steps" \
    --format markdown --plot "$OUT/08-scores.png" > "$OUT/08-scores.md"
or-annotate "$OUT/03-gen.jsonl" -q > "$OUT/09-flaws.jsonl"
or-annotate report "$OUT/09-flaws.jsonl" --label "$label" --format markdown --plot "$OUT/09-flaws.png" > "$OUT/09-flaws.md"
# the trajectories to look at (before and after CALM side by side) and the lint of the CALM run
or-view "$OUT/08-scored-gen.jsonl" "$OUT/08-scored-calm.jsonl" --label "$label" \
    --label "$label + CALM hints" --title "calm-storm demo: generation vs CALM" -o "$OUT/view.html" -q
or-view "$OUT/08-scored-calm.jsonl" --check -q > "$OUT/10-lint.txt" || [ $? -eq 1 ]
python3 "$here/demo/report.py" "$OUT" --model "$label"
echo "report: $OUT/report.md" >&2
