"""or-grpo: not built yet; the command says so."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(epilog=epilog("or-grpo rl.jsonl --model ckpt/sft -o ckpt/storm --dry-run"))
@io_options
def main(io) -> None:
    """GRPO through verl with code execution in the rollout and executor tokens masked.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-grpo")
