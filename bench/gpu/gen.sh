#!/usr/bin/env bash
# or-gen's GPU smoke test (a part of bench/gpu-smoke.sh), for a GPU node with vLLM installed
# (`uv sync --extra gpu`, which holds the or-gen package's `vllm` extra).
#
# A tiny randomly initialised Qwen3 is built from the shared Qwen3-4B-Thinking-2507 config
# (scaled down) with the real tokenizer, then:
#   1. `vllm serve` + or-gen --api-base: token-id prompts, ids returned, greedy;
#   2. or-gen --backend vllm: the in-process engine on the same problems;
#   3. checks: every (problem, sample) once, no error, ids from the engine, the budget held,
#      flows well formed (executor segments only after a closed ```python block, a block per
#      execution) and token-exact: the record's token-layer sequence, sent back to the server
#      with prompt_logprobs, is what greedy decoding produces (rank 1 at every generated
#      position), so the ids or-gen keeps are the ids the model wrote. Random weights seldom
#      write a code block, so executions are counted here but exercised by the CPU tests.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORK=${WORK:-$(mktemp -d -t gpu-gen-XXXX)}
PORT=${PORT:-8765}
N_PROBLEMS=${N_PROBLEMS:-4}
N_SAMPLES=${N_SAMPLES:-2}
MAX_TOKENS=${MAX_TOKENS:-256}
MAX_MODEL_LEN=${MAX_MODEL_LEN:-4096}
TOKENIZER=${TOKENIZER:-$ROOT/tests/fixtures/qwen3-tokenizer}
PROBLEMS=${PROBLEMS:-$ROOT/tests/fixtures/problems.jsonl}
GPU_MEM=${GPU_MEM:-0.3}
cd "$ROOT"

if ! uv run --no-sync python -c "import vllm" 2>/dev/null; then
  echo "gpu/gen: vLLM is not installed here: uv sync --extra gpu" >&2
  exit 2
fi
MODEL="$WORK/tiny-qwen3"
echo "gpu/gen: building a tiny random Qwen3 in $MODEL" >&2
uv run --no-sync python - "$TOKENIZER" "$MODEL" <<'PY'
import json, shutil, sys
from pathlib import Path
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
dst.mkdir(parents=True, exist_ok=True)
config = json.loads((src / "config.json").read_text())  # the real model's config, scaled down
config.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, head_dim=32, max_window_layers=2, max_position_embeddings=4096)
torch.manual_seed(0)
model = Qwen3ForCausalLM(Qwen3Config(**config)).to(torch.bfloat16)
model.save_pretrained(dst)
for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
    shutil.copy(src / name, dst / name)  # the real tokenizer and sampling defaults
PY

head -n "$N_PROBLEMS" "$PROBLEMS" > "$WORK/problems.jsonl"
GEN=(--tokenizer "$MODEL" --n "$N_SAMPLES" --max-tokens "$MAX_TOKENS" --temperature 0 --workers 2 -q)

echo "gpu/gen: vllm serve on :$PORT" >&2
uv run --no-sync vllm serve "$MODEL" --port "$PORT" --served-model-name tiny \
  --max-model-len "$MAX_MODEL_LEN" --gpu-memory-utilization "$GPU_MEM" --enforce-eager \
  > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { tail -n 30 "$WORK/serve.log" >&2; exit 1; }
  sleep 1
done

uv run --no-sync or-gen --model tiny --api-base "http://127.0.0.1:$PORT/v1" "${GEN[@]}" \
  < "$WORK/problems.jsonl" > "$WORK/served.jsonl"

cat > "$WORK/check.py" <<'PY'
"""Checks of or-gen's output on a GPU node (see bench/gpu/gen.sh)."""
import json, sys, urllib.request
from or_common.blocks import flow_blocks
from or_common.tokens import encode_record, load_tokenizer

path, model, n_expected, max_tokens, url = sys.argv[1:6]
tok = load_tokenizer(model)
records = [json.loads(line) for line in open(path)]
keys = sorted((r["id"], r["sample"]) for r in records)
assert len(keys) == len(set(keys)) == int(n_expected), f"{len(keys)} records, {n_expected} expected"
ranks_ok = ranks_all = executions = 0
for r in records:
    g = r["gen"]
    assert "error" not in g, g.get("error")
    assert g["token_ids"] == "engine", g["token_ids"]
    assert g["finish"] in ("stop", "length", "fake_output", "rounds"), g["finish"]
    enc = encode_record(tok, r)
    assert enc.response_tokens == g["completion_tokens"] + g["executor_tokens"] + (g["finish"] == "stop")
    assert g["completion_tokens"] <= int(max_tokens) + 1
    assert len(flow_blocks(r["flow"])) >= sum(s["role"] == "executor" for s in r["flow"])
    executions += g["executions"]
    if url == "-":
        continue
    body = {"model": "tiny", "prompt": enc.input_ids, "max_tokens": 1, "temperature": 0,
            "prompt_logprobs": 1}
    req = urllib.request.Request(url + "/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    logprobs = json.load(urllib.request.urlopen(req, timeout=120))["choices"][0]["prompt_logprobs"]
    for pos in range(enc.prompt_tokens, len(enc.input_ids)):
        if not enc.loss_mask[pos]:
            continue  # executor output: the sandbox wrote it, not the model
        entry = logprobs[pos] or {}
        actual = entry.get(str(enc.input_ids[pos])) or entry.get(enc.input_ids[pos]) or {}
        ranks_all += 1
        ranks_ok += actual.get("rank") == 1
print(json.dumps({"file": path, "records": len(records), "executions": executions,
                  "greedy_positions": ranks_all, "rank1": ranks_ok}))
if ranks_all:  # near-ties in bf16 may flip a rare argmax; a retokenized sequence fails wholesale
    assert ranks_ok >= 0.98 * ranks_all, f"only {ranks_ok}/{ranks_all} generated ids are greedy"
PY
N=$((N_PROBLEMS * N_SAMPLES))
uv run --no-sync python "$WORK/check.py" "$WORK/served.jsonl" "$MODEL" "$N" "$MAX_TOKENS" \
  "http://127.0.0.1:$PORT/v1"
kill $SERVER 2>/dev/null || true
wait $SERVER 2>/dev/null || true
trap - EXIT

echo "gpu/gen: or-gen --backend vllm" >&2
uv run --no-sync or-gen --backend vllm --model "$MODEL" --max-model-len "$MAX_MODEL_LEN" "${GEN[@]}" \
  < "$WORK/problems.jsonl" > "$WORK/offline.jsonl" 2> "$WORK/offline.log" \
  || { tail -n 30 "$WORK/offline.log" >&2; exit 1; }
uv run --no-sync python "$WORK/check.py" "$WORK/offline.jsonl" "$MODEL" "$N" "$MAX_TOKENS" -
uv run --no-sync python - "$WORK/served.jsonl" "$WORK/offline.jsonl" <<'PY'
import json, sys
flows = [{(r["id"], r["sample"]): r["flow"] for r in map(json.loads, open(p))} for p in sys.argv[1:]]
same = sum(flows[0][k] == flows[1].get(k) for k in flows[0])
print(json.dumps({"served_vs_offline_identical_flows": f"{same}/{len(flows[0])}"}))
PY
echo "gpu/gen: ok ($WORK)" >&2
