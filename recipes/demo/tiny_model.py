"""A tiny, randomly initialised Qwen3 with the real Qwen3-4B-Thinking-2507 tokenizer: the real
config scaled down (2 layers, hidden 64) with the real vocabulary, saved with the tokenizer and
generation config so every tool loads it like a real checkpoint. Its weights are random: it
exists to run the training and generation machinery on a CPU, never to produce results.

    python recipes/demo/tiny_model.py --tokenizer TOKENIZER_DIR -o DIR
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

SCALED = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 32768,
    "max_window_layers": 2,
    "layer_types": ["full_attention", "full_attention"],
}


def build(tokenizer_dir: Path, out: Path, seed: int = 0) -> Path:
    """Write the tiny model to `out` and return it."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    config = json.loads((tokenizer_dir / "config.json").read_text())
    config.update(SCALED)
    config.pop("architectures", None)
    config["torch_dtype"] = "float32"
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(Qwen3Config(**config))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True).save_pretrained(out)
    generation = tokenizer_dir / "generation_config.json"
    if generation.exists():
        shutil.copy(generation, out / "generation_config.json")
    else:
        GenerationConfig(eos_token_id=config.get("eos_token_id")).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokenizer", required=True, type=Path)
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.tokenizer, args.output, args.seed)


if __name__ == "__main__":
    main()
