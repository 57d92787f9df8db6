"""A tiny, randomly initialised Qwen3 with the real Qwen3-4B-Thinking-2507 tokenizer (the real
config scaled down to 2 layers, real vocabulary, generation config), saved so every tool loads it
like a real checkpoint. Its weights are random: it exists to run the training and generation
machinery on a CPU, never to produce results. The tests build their tiny Qwen3 with this same
builder (tests/helpers.py).

    python recipes/demo/tiny_model.py -o DIR [--seed 0] [--tokenizer DIR]

The config is scaled down (layers, widths, heads) but keeps what makes it a Qwen3-4B-Thinking:
the real vocabulary (151936) and tokenizer, the rope and attention settings, tied embeddings and
the generation config, so that a checkpoint trained from it loads and generates like the real one.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

#: the real tokenizer, config and generation config (no weights), kept with the tests' fixtures
QWEN_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "qwen3-tokenizer"

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


def tiny_qwen_config(source: Path = QWEN_DIR, **overrides: Any):
    """The real config in `source` with SCALE_DOWN (and `overrides`) applied, as a transformers
    Qwen3Config."""
    from transformers import Qwen3Config

    raw = json.loads((Path(source) / "config.json").read_text())
    raw.update(SCALE_DOWN)
    raw.update(overrides)
    for key in ("architectures", "transformers_version", "model_type"):
        raw.pop(key, None)
    raw["dtype"] = raw.pop("torch_dtype")
    return Qwen3Config(**raw)


def make_tiny_qwen(path: Path, seed: int = 0, source: Path = QWEN_DIR, **overrides: Any) -> Path:
    """Save a randomly initialised tiny Qwen3, with the tokenizer and generation config of
    `source`, to `path` (a folder any `from_pretrained` loads); returns `path`."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3ForCausalLM

    torch.manual_seed(seed)
    path = Path(path)
    model = Qwen3ForCausalLM(tiny_qwen_config(source, **overrides))
    model.generation_config = GenerationConfig.from_pretrained(source)
    model.save_pretrained(path)
    AutoTokenizer.from_pretrained(source).save_pretrained(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tokenizer",
        type=Path,
        default=QWEN_DIR,
        help="a Qwen3 folder with config.json, tokenizer and generation_config.json",
    )
    args = parser.parse_args()
    make_tiny_qwen(args.output, seed=args.seed, source=args.tokenizer)


if __name__ == "__main__":
    main()
