# Shared by the experiment recipes (source it): resumable stages, stamped outputs, and the one
# way every recipe evaluates a model. Knobs read here: BACKEND, N, PROTOCOL, MAX_TOKENS, TOKENIZER.

BACKEND=${BACKEND:-vllm}        # how a model without @API_BASE is run: vllm (GPU) or transformers
N=${N:-8}                       # samples per problem (the paper: 8)
PROTOCOL=${PROTOCOL:-strict}    # scoring protocol (the paper: strict, relative error <= 1e-3)

# stage NAME DIR CMD...: run CMD unless DIR/.done-NAME exists, then mark it done. A recipe that
# is stopped and rerun skips finished stages; a stage that failed is run again.
stage() {
    local name=$1 dir=$2; shift 2
    if [ -e "$dir/.done-$name" ]; then
        echo "[$name] done before, skipped ($dir/.done-$name)" >&2
        return 0
    fi
    echo "[$name] $*" >&2
    "$@"
    touch "$dir/.done-$name"
}

# train_stage NAME DIR CMD...: a stage that trains on a GPU (GRPO). With DRY_RUN set, CMD only
# prints what it would run, so it is run every time and never marked done: a real rerun trains.
train_stage() {
    if [ -n "${DRY_RUN:-}" ]; then
        shift 2
        "$@"
    else
        stage "$@"
    fi
}

# stamp DIR KEY=VALUE...: DIR/stamp.json (or_common.stamp) with the git commit, the date, the
# tools' version and each KEY=VALUE; a value that names a file also gets its sha256. Fails when
# DIR holds finished stages (.done-*) stamped with other values: a rerun must not reuse another
# run's results.
stamp() {
    python3 -m or_common.stamp "$@"
}

# evaluate LABEL SPEC DATA DIR [or-gen flags...]: generate N samples per problem of DATA with
# the model SPEC and score them into DIR/scored.jsonl. SPEC is MODEL@API_BASE for a served model
# (vllm serve, SGLang: the openai backend) or a path / hub name run in-process with $BACKEND.
evaluate() {
    local label=$1 spec=$2 data=$3 dir=$4; shift 4
    local model=${spec%%@*} flags=()
    if [[ $spec == *@* ]]; then
        flags=(--api-base "${spec#*@}")
    else
        flags=(--backend "$BACKEND")
    fi
    [ -n "${TOKENIZER:-}" ] && flags+=(--tokenizer "$TOKENIZER")
    [ -n "${MAX_TOKENS:-}" ] && flags+=(--max-tokens "$MAX_TOKENS")
    mkdir -p "$dir"
    stamp "$dir" label="$label" model="$model" data="$data" protocol="$PROTOCOL" n="$N" \
        backend="${flags[*]}" max_tokens="${MAX_TOKENS:-}" tokenizer="${TOKENIZER:-}" flags="$*"
    stage "gen-$label" "$dir" or-gen "$data" --model "$model" "${flags[@]}" --n "$N" \
        -o "$dir/gen.jsonl" --resume "$@"
    # an empty run must not pass for a result (or-score report fails on one without records too)
    if [ ! -s "$dir/gen.jsonl" ]; then
        echo "evaluate: generation wrote no trajectory to $dir/gen.jsonl (is $data empty?)" >&2
        rm -f "$dir/.done-gen-$label"
        return 1
    fi
    or-score "$dir/gen.jsonl" --protocol "$PROTOCOL" -q -o "$dir/scored.jsonl"
}

# side_by_side OUT_PREFIX DIR...: one report of several evaluated runs (the paper's Table 2
# layout: five benchmarks and their macro average, one row per run), markdown and PNG.
side_by_side() {
    local prefix=$1; shift
    local files=() labels=()
    for dir in "$@"; do
        files+=("$dir/scored.jsonl")
        labels+=(--label "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["label"])' "$dir/stamp.json")")
    done
    or-score report "${files[@]}" "${labels[@]}" --protocol "$PROTOCOL" --format markdown \
        --plot "$prefix.png" > "$prefix.md"
    cat "$prefix.md"
}
