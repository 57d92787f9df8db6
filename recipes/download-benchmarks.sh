#!/usr/bin/env bash
# Download the public optimization-modeling test sets and convert them to calm-storm's record
# format ({"id", "benchmark", "question", "answer", "source", "meta"}), one file per benchmark.
#
# Source: the cleaned test sets of LLMOPT (antgroup/LLMOPT, data/testset/), pinned to the commit
# that ../shared/data was built from, so numbers stay comparable. Needs git and internet access.
#
#   OUT=data bash recipes/download-benchmarks.sh
set -euo pipefail

OUT=${OUT:-data}
REPO=${REPO:-https://github.com/antgroup/LLMOPT.git}
COMMIT=${COMMIT:-1492dd33e39ea13f1afe32a0adc13d4217334195}
WORK=${WORK:-$(mktemp -d)}

git clone --quiet --filter=blob:none "$REPO" "$WORK/LLMOPT"
git -C "$WORK/LLMOPT" checkout --quiet "$COMMIT"
mkdir -p "$OUT"

# file in the source repo -> our benchmark file name
declare -A FILES=(
    [nl4opt_test.jsonl]=nl4opt [mamo_easy_test.jsonl]=mamo_easy [mamo_complex_test.jsonl]=mamo_complex
    [industryor.jsonl]=industryor [optmath_bench.jsonl]=optmath [optibench.jsonl]=optibench
    [complexor.jsonl]=complexor [nlp4lp.jsonl]=nlp4lp
)
for src in "${!FILES[@]}"; do
    name=${FILES[$src]}
    uv run python recipes/convert_llmopt.py "$WORK/LLMOPT/data/testset/$src" --benchmark "$name" \
        --source "antgroup/LLMOPT@$COMMIT:data/testset/$src" > "$OUT/$name.jsonl"
    echo "$OUT/$name.jsonl: $(wc -l < "$OUT/$name.jsonl") problems" >&2
done
