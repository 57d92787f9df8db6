"""or-gen: not built yet; the command says so (issue #4)."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(
    epilog=epilog(
        "or-gen --model Qwen/Qwen3-4B-Thinking-2507 --backend vllm --n 8 < test.jsonl > run.jsonl",
        "or-gen --model ckpt/storm < test.jsonl | or-score | or-score report -",
    )
)
@io_options
def main(io) -> None:
    """Generate trajectories: the Reasoner thinks, writes PuLP code, and runs it inside its own reasoning.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-gen", 4)
