"""A real inference engine for the CPU tests: vLLM's CPU build serving a tiny Qwen3 (the real
tokenizer) that has learnt, in a few seconds of training, to write one ```python block and an
answer (as bench/gpu/grpo.sh does on a GPU).

vLLM's CPU attention needs head_dim >= 32 (recipes/demo/tiny_model.py's has 8), so the model here
is built with its own small config. The server runs with the documented CPU settings (the
Justfile's `serve-cpu` recipe): eager mode (no compile at start), no chunked prefill (per-request
seeds would kill the CPU engine), a KV cache of VLLM_CPU_KVCACHE_SPACE GiB.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from helpers import QWEN_DIR, free_port

#: What the model learns: reason, one code block, its output, an answer. The answer quotes the
#: output in a fence it never closes, then ends its turn: an end of turn inside an open fence
#: (the engine stops on <|im_end|>), which must end the turn, never be taken for a code block.
BLOCK = "Let me solve it with pulp.\n```python\nprint(6 * 7 + 103)\n```\n"
OUTPUT = "```output\n145\n```\n"
ANSWER = "That is plausible:\n```text\n145\n</think>\n\n\\boxed{145}"
#: The engine settings the CPU build needs (what `just serve-cpu` passes too).
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}


def vllm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def train_tiny_reasoner(out: Path, questions: list[str], steps: int = 120) -> Path:
    """A tiny Qwen3 (head_dim 32, the real tokenizer and generation config) overfitted on the
    trajectory BLOCK -> OUTPUT -> ANSWER for each question; saved to `out` in float32."""
    import torch
    from or_common.reasoner import REASONER_PROMPT, build_messages
    from or_common.tokens import encode
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    tok = AutoTokenizer.from_pretrained(QWEN_DIR)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        dtype="float32",
    )
    model = Qwen3ForCausalLM(config)
    flow = [
        {"role": "reasoner", "text": BLOCK},
        {"role": "executor", "text": OUTPUT},
        {"role": "reasoner", "text": ANSWER},
    ]
    seqs = []
    for q in questions:
        enc = encode(tok, build_messages(q, REASONER_PROMPT, 4), flow, "stop")
        seqs.append((torch.tensor([enc.input_ids]), torch.tensor([enc.labels])))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    loss = torch.tensor(float("nan"))  # steps=0: random weights
    for step in range(steps):
        ids, labels = seqs[step % len(seqs)]
        # the logits only where the loss is (the response): the prompt's 150k-wide logits
        # would cost ten times the rest of the step
        hidden = model.model(input_ids=ids).last_hidden_state[0, :-1]
        target = labels[0, 1:]
        keep = target != -100
        logits = model.lm_head(hidden[keep])
        loss = torch.nn.functional.cross_entropy(logits, target[keep])
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.generation_config = GenerationConfig.from_pretrained(QWEN_DIR)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "train.json").write_text(json.dumps({"steps": steps, "loss": loss.item()}))
    return out


def server_command(model: Path, port: int) -> list[str]:
    """`vllm serve` for the CPU build (whose distribution is `vllm-cpu`, so the `vllm` script
    cannot find itself: the module is run instead)."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--enforce-eager",
        "--no-enable-chunked-prefill",
        "--max-model-len",
        "4096",
        "--max-num-seqs",
        "16",
        "--seed",
        "0",
    ]


@contextlib.contextmanager
def vllm_server(model: Path, log: Path, timeout: float = 300) -> Iterator[str]:
    """A real vLLM CPU server for `model` on 127.0.0.1; yields its /v1 URL."""
    port = free_port()
    env = {**os.environ, **CPU_ENV, "VLLM_LOGGING_LEVEL": "WARNING"}
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            server_command(model, port), stdout=sink, stderr=subprocess.STDOUT, env=env
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"vllm server exited {proc.returncode}:\n{tail}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vllm server not up in {timeout}s")
                time.sleep(0.5)
            yield f"{url}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
