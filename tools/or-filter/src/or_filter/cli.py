"""or-filter: not built yet; the command says so (issue #6)."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(
    epilog=epilog("or-intervene ... | or-filter --golden --max-tokens 22000 > calm.jsonl")
)
@io_options
def main(io) -> None:
    """Select records: correct, golden, by tokens, by benchmark, decontaminated, sampled.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-filter", 6)
