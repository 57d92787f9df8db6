#!/usr/bin/env bash
# GPU benchmark of or-sft: STEPS ZeRO-3 steps of the tiny random Qwen3 (recipes/demo/tiny_model.py;
# the real vocabulary, so the LM head is full size) on realistic ~6k-token trajectories, on every
# visible GPU, through or-sft's own launch (accelerate + DeepSpeed ZeRO-3, bf16). Then the same
# data through trl's default path (a conversational dataset that trl renders, tokenizes and
# collates itself; max_length raised to ours so nothing is cut), same model, same launch.
# Prints training tokens/s per GPU for both, from the steps after the first (warm-up).
#
#   bash bench/gpu/sft.sh                # needs: CUDA GPUs, `uv sync --extra gpu` (no venv
#   GPUS=8 STEPS=5 RECORDS=64 bash bench/gpu/sft.sh            # activation: all through uv run)
set -euo pipefail

cd "$(dirname "$0")/../.."
run() { uv run --no-sync "$@"; }
GPUS=${GPUS:-$(run python -c "import torch; print(torch.cuda.device_count())")}
[ "$GPUS" -ge 1 ] || { echo "bench/gpu/sft.sh: no CUDA GPU visible" >&2; exit 2; }
STEPS=${STEPS:-5}
# a global batch of 8 per GPU: any GPU count divides it (8 alone fails on 3, 5, 6, 7 GPUs)
GLOBAL_BATCH=${GLOBAL_BATCH:-$((GPUS * 8))}
RECORDS=${RECORDS:-$((GLOBAL_BATCH * STEPS))}
WORK=${WORK:-$(mktemp -d /tmp/or-sft-gpu-bench.XXXX)}
MAX_LENGTH=${MAX_LENGTH:-22000}

run python bench/sft.py --records "$RECORDS" --write "$WORK/traj.jsonl"
run python recipes/demo/tiny_model.py -o "$WORK/tiny"

# 1. or-sft: the token layer's input_ids + labels, ZeRO-3 from recipes/deepspeed/zero3.json
run or-sft "$WORK/traj.jsonl" --model "$WORK/tiny" -o "$WORK/or-sft" --num-processes "$GPUS" \
    --deepspeed recipes/deepspeed/zero3.json --precision bf16 --max-steps "$STEPS" \
    --global-batch "$GLOBAL_BATCH" --max-length "$MAX_LENGTH" --save-steps 100000 -q "$@"

# 2. trl's default: messages in, trl's own chat-template rendering, tokenization and collation
cat > "$WORK/trl_default.py" <<'PY'
import json, sys, time
from datasets import Dataset
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer
work, steps, max_length, accum = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
rows = [json.loads(l) for l in open(f"{work}/traj.jsonl")]
data = Dataset.from_list([{"messages": r["messages"] + [{"role": "assistant",
        "content": "".join(s["text"] for s in r["flow"])}]} for r in rows])
class Log(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if state.is_world_process_zero and logs and "loss" in logs:
            with open(f"{work}/trl-default/metrics.jsonl", "a") as fh:
                fh.write(json.dumps({"step": state.global_step, "time": time.time(),
                                     "num_tokens": logs.get("num_tokens")}) + "\n")
args = SFTConfig(output_dir=f"{work}/trl-default", max_steps=steps, bf16=True, logging_steps=1,
                 per_device_train_batch_size=1, gradient_accumulation_steps=accum,
                 gradient_checkpointing=True, max_length=max_length, report_to="none",
                 save_strategy="no", deepspeed="recipes/deepspeed/zero3.json")
SFTTrainer(model=f"{work}/tiny", args=args, train_dataset=data, callbacks=[Log()]).train()
PY
mkdir -p "$WORK/trl-default"
# one process: accelerate's simple launcher sets no torch.distributed variables and DeepSpeed
# would fall back to MPI (`No module named mpi4py`); or-sft's launch sets the same ones
single=()
if [ "$GPUS" -eq 1 ]; then
    single=(env MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 RANK=0 LOCAL_RANK=0 WORLD_SIZE=1)
fi
"${single[@]}" uv run --no-sync accelerate launch --num_processes "$GPUS" "$WORK/trl_default.py" \
    "$WORK" "$STEPS" "$MAX_LENGTH" "$((GLOBAL_BATCH / GPUS))"

run python - "$WORK" "$GPUS" <<'PY'
import json, sys
work, gpus = sys.argv[1], int(sys.argv[2])
ours = [json.loads(l) for l in open(f"{work}/or-sft/metrics.jsonl")][1:]
theirs = [json.loads(l) for l in open(f"{work}/trl-default/metrics.jsonl")]
ours_tps = sum(r["tokens"] for r in ours) / sum(r["seconds"] for r in ours)  # per process
span = theirs[-1]["time"] - theirs[0]["time"]
theirs_tps = (theirs[-1]["num_tokens"] - theirs[0]["num_tokens"]) / span / gpus
print(json.dumps({"gpus": gpus, "steps_timed": len(ours),
                  "or_sft_tokens_per_s_per_gpu": round(ours_tps),
                  "trl_default_tokens_per_s_per_gpu": round(theirs_tps),
                  "ratio": round(ours_tps / theirs_tps, 3)}, indent=2))
PY
