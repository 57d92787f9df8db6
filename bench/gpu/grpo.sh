#!/usr/bin/env bash
# GPU smoke test of or-grpo: 2 real GRPO steps through verl (vLLM rollouts, FSDP actor) of a
# tiny randomly initialised Qwen3 on 8 problems, with real or-exec executions inside the
# rollouts; then export the final actor to Hugging Face format and generate from it with
# or-gen. Needs one CUDA GPU and the GPU stack: `uv sync --extra gpu`. Takes a few minutes.
#
# A random model never writes a code fence, so the tiny model is first overfitted for a few
# seconds on one trajectory that holds a ```python block (prompt -> block -> output -> answer):
# its rollouts then close fences, the sandbox runs them, and the reward sees right and wrong
# answers. What this proves on a GPU (vLLM's stop strings, FSDP updates on masked executor
# tokens, verl's checkpoint and model merger) is what the CPU tests in tests/test_grpo.py
# cannot; the token-level turn rules themselves are proven there.
#
# Usage: bash bench/gpu/grpo.sh [extra verl key=value overrides...]
set -euo pipefail

WORK=${WORK:-$(mktemp -d /tmp/or-grpo-smoke.XXXXXX)}
STEPS=${STEPS:-2}
PROBLEMS=${PROBLEMS:-8}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOKENIZER=${TOKENIZER:-$ROOT/tests/fixtures/qwen3-tokenizer}
cd "$ROOT"
echo "or-grpo GPU smoke in $WORK" >&2

# 1. 8 problems (the bundled ones, repeated under new ids) with known answers
uv run python - "$PROBLEMS" > "$WORK/problems.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open("tests/fixtures/problems.jsonl") if l.strip()]
for i in range(int(sys.argv[1])):
    row = dict(rows[i % len(rows)], id=f"smoke-{i}")
    print(json.dumps(row))
EOF

# 2. a tiny Qwen3 (real Qwen3 tokenizer) that has learnt to write one code block
uv run python - "$TOKENIZER" "$WORK/tiny" "$WORK/problems.jsonl" <<'EOF'
import json, shutil, sys
import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM
from or_common.tokens import encode
from or_common.reasoner import REASONER_PROMPT, build_messages

tok_dir, out, problems = sys.argv[1:4]
tok = AutoTokenizer.from_pretrained(tok_dir)
torch.manual_seed(0)
config = Qwen3Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                     num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                     head_dim=64, max_position_embeddings=4096, tie_word_embeddings=True,
                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
model = Qwen3ForCausalLM(config).cuda()
block = "Let me solve it with pulp.\n```python\nprint(145)\n```\n"
rows = [json.loads(l) for l in open(problems)]
seqs = []
for row in rows:
    flow = [{"role": "reasoner", "text": block},
            {"role": "executor", "text": "```output\n145\n```\n"},
            {"role": "reasoner", "text": "That is plausible.\n</think>\n\n\\boxed{145}"}]
    enc = encode(tok, build_messages(row["question"], REASONER_PROMPT, 4), flow, "stop")
    seqs.append((enc.input_ids, enc.labels))
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
for step in range(150):
    ids, labels = seqs[step % len(seqs)]
    loss = model(input_ids=torch.tensor([ids]).cuda(), labels=torch.tensor([labels]).cuda()).loss
    loss.backward(); opt.step(); opt.zero_grad()
print(f"overfit loss {loss.item():.3f}", file=sys.stderr)
model.save_pretrained(out)
tok.save_pretrained(out)
EOF

# 3. verl's parquet, then 2 GRPO steps with real sandbox executions
uv run or-grpo prepare "$WORK/problems.jsonl" -o "$WORK/data" --val "$WORK/problems.jsonl"
uv run or-grpo train "$WORK/data" --model "$WORK/tiny" -o "$WORK/run" \
    --gpus-per-node 1 --batch-size "$PROBLEMS" --mini-batch-size "$PROBLEMS" --n 2 \
    --max-prompt-length 1024 --max-response-length 256 --val-n 1 --test-freq 1 \
    --save-freq "$STEPS" --epochs "$STEPS" \
    trainer.total_training_steps="$STEPS" \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.3 \
    actor_rollout_ref.rollout.agent.num_workers=2 \
    reward.num_workers=1 data.dataloader_num_workers=0 \
    "$@"

# 4. the run produced per-step metrics with executions in them
uv run python - "$WORK/run" "$STEPS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
steps = [r for r in rows if r.get("trajectories")]
print(json.dumps(rows, indent=1), file=sys.stderr)
assert len(steps) >= int(sys.argv[2]), f"expected {sys.argv[2]} training steps, got {len(steps)}"
assert any(r["executions"] > 0 for r in steps), "no code was executed in the rollouts"
EOF

# 5. export the final actor and generate from it
uv run or-grpo export "$WORK/run" -o "$WORK/hf"
uv run or-gen "$WORK/problems.jsonl" --model "$WORK/hf" --backend vllm --n 1 --limit 2 \
    --max-tokens 256 -o "$WORK/gen.jsonl"
test "$(wc -l < "$WORK/gen.jsonl")" -eq 2
echo "or-grpo GPU smoke passed: $WORK/run/metrics.jsonl, $WORK/run/curves.png, $WORK/hf" >&2
