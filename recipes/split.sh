#!/usr/bin/env bash
# Build the SFT / RL / test splits of the reference (SPEC §1) from the benchmark files:
# per-benchmark counts, no id in two splits, and no test question (even reworded) in SFT or RL.
# The public sets overlap heavily (NL4Opt, NLP4LP, OptiBench and the ICML set share hundreds of
# questions), so every later split is decontaminated against the earlier ones.
#
#   DATA=../shared/data OUT=splits SEED=0 bash recipes/split.sh
#   DATA=data/sample SPLITS="nl4opt:8:0:0 mamo_easy:0:2:0 optmath:0:0:1" OUT=splits bash recipes/split.sh
set -euo pipefail

DATA=${DATA:-../shared/data}
OUT=${OUT:-splits}
SEED=${SEED:-0}
THRESHOLD=${THRESHOLD:-0.5}

# benchmark file : SFT RL test, the reference's counts; SPLITS="nl4opt:8:0:0 optmath:0:0:1"
# replaces them (a smoke run on a small folder such as data/sample)
REFERENCE="nl4opt:8:8:30 mamo_easy:200:350:100 mamo_complex:55:56:100 industryor:6:12:80
    optmath:30:36:100 optibench:250:257:100 complexor:0:0:18 nlp4lp:0:0:12"
read -r -d '' -a SPLITS <<< "${SPLITS:-$REFERENCE}" || true
if [ "${#SPLITS[@]}" -eq 0 ]; then
    echo "split.sh: SPLITS holds no FILE:SFT:RL:TEST spec" >&2
    exit 2
fi
for spec in "${SPLITS[@]}"; do
    if ! [[ $spec =~ ^[A-Za-z0-9_.-]+:[0-9]+:[0-9]+:[0-9]+$ ]]; then
        echo "split.sh: '$spec' is not FILE:SFT:RL:TEST (e.g. nl4opt:8:8:30)" >&2
        exit 2
    fi
done

# every input is checked before anything is written: a missing benchmark file must not leave
# an empty or half-built split behind
missing=()
for spec in "${SPLITS[@]}"; do
    name=${spec%%:*}
    if [ ! -s "$DATA/$name.jsonl" ] || [ ! -r "$DATA/$name.jsonl" ]; then missing+=("$name.jsonl"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "split.sh: DATA=$DATA has no ${missing[*]} (download them with \`just data\` and" \
        "set DATA=data, or pick files that exist with SPLITS=\"FILE:SFT:RL:TEST ...\"); nothing written" >&2
    exit 2
fi
mkdir -p "$OUT"
# built in a scratch folder and moved into $OUT only when all three splits are done
WORK=$(mktemp -d "$OUT/.split.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

take() {  # take FILE N OUT_FILE [extra or-filter args]: N problems with an answer, seeded
    local file=$1 n=$2 out=$3; shift 3
    if [ "$n" -eq 0 ]; then : > "$out"; return; fi
    or-filter "$DATA/$file.jsonl" --has-answer --sample "$n" --seed "$SEED" -q "$@" > "$out"
}

: > "$WORK/test.jsonl"
for spec in "${SPLITS[@]}"; do
    IFS=: read -r name sft rl test <<< "$spec"
    take "$name" "$test" "$WORK/.test-$name.jsonl"
    cat "$WORK/.test-$name.jsonl" >> "$WORK/test.jsonl"
done

: > "$WORK/sft.jsonl"
for spec in "${SPLITS[@]}"; do
    IFS=: read -r name sft rl test <<< "$spec"
    take "$name" "$sft" "$WORK/.sft-$name.jsonl" --exclude "$WORK/test.jsonl" --decontaminate "$WORK/test.jsonl" --threshold "$THRESHOLD"
    cat "$WORK/.sft-$name.jsonl" >> "$WORK/sft.jsonl"
done

: > "$WORK/rl.jsonl"
for spec in "${SPLITS[@]}"; do
    IFS=: read -r name sft rl test <<< "$spec"
    take "$name" "$rl" "$WORK/.rl-$name.jsonl" --exclude "$WORK/test.jsonl" --exclude "$WORK/sft.jsonl" \
        --decontaminate "$WORK/test.jsonl" --threshold "$THRESHOLD"
    cat "$WORK/.rl-$name.jsonl" >> "$WORK/rl.jsonl"
done
mv "$WORK/test.jsonl" "$WORK/sft.jsonl" "$WORK/rl.jsonl" "$OUT/"

for split in sft rl test; do
    echo "$OUT/$split.jsonl: $(wc -l < "$OUT/$split.jsonl") problems" >&2
    python3 -c "import collections, json, sys; c = collections.Counter(json.loads(l)['benchmark'] for l in open(sys.argv[1])); print('  ' + ', '.join(f'{k} {v}' for k, v in sorted(c.items())))" "$OUT/$split.jsonl" >&2
done
