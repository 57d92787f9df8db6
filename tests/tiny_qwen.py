"""A tiny randomly initialised Qwen3 built from the real Qwen3-4B-Thinking-2507 config.

The config is scaled down (layers, widths, heads) but keeps what makes it a Qwen3-4B-Thinking:
the real vocabulary (151936) and tokenizer, the rope and attention settings, tied embeddings and
the generation config, so that a checkpoint trained from it loads and generates like the real one.
"""

from __future__ import annotations

import json
from pathlib import Path

QWEN_DIR = Path(__file__).parent / "fixtures" / "qwen3-tokenizer"

#: What changes from the real config; everything else (vocab_size, rope_theta, rms_norm_eps,
#: attention_bias, tie_word_embeddings, special token ids) is kept.
SCALE_DOWN = {
    "num_hidden_layers": 2,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_window_layers": 2,
    "max_position_embeddings": 4096,
    "torch_dtype": "float32",
}


def tiny_qwen_config(**overrides):
    """The real config with SCALE_DOWN (and `overrides`) applied, as a transformers Qwen3Config."""
    from transformers import Qwen3Config

    raw = json.loads((QWEN_DIR / "config.json").read_text())
    raw.update(SCALE_DOWN)
    raw.update(overrides)
    for key in ("architectures", "transformers_version", "model_type"):
        raw.pop(key, None)
    raw["dtype"] = raw.pop("torch_dtype")
    return Qwen3Config(**raw)


def make_tiny_qwen(path: Path, seed: int = 0, **overrides) -> Path:
    """Save a randomly initialised tiny Qwen3, with the real tokenizer and generation config,
    to `path` (a folder any `from_pretrained` loads); returns `path`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    torch.manual_seed(seed)
    path = Path(path)
    model = Qwen3ForCausalLM(tiny_qwen_config(**overrides))
    model.generation_config = GenerationConfig.from_pretrained(QWEN_DIR)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(QWEN_DIR).save_pretrained(path)
    return path
