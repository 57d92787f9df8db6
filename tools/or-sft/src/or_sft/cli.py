"""or-sft: not built yet; the command says so."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(epilog=epilog("or-sft calm.jsonl -o ckpt/sft"))
@io_options
def main(io) -> None:
    """Supervised fine-tuning on golden trajectories (trl + DeepSpeed ZeRO-3), executor tokens masked.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-sft")
