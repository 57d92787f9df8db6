"""A tiny, randomly initialised Qwen3 with the real Qwen3-4B-Thinking-2507 tokenizer (the real
config scaled down to 2 layers, real vocabulary, generation config), saved so every tool loads it
like a real checkpoint. Its weights are random: it exists to run the training and generation
machinery on a CPU, never to produce results. The builder is the tests' own (tests/tiny_qwen.py).

    python recipes/demo/tiny_model.py -o DIR [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from tiny_qwen import make_tiny_qwen  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_tiny_qwen(args.output, seed=args.seed)


if __name__ == "__main__":
    main()
