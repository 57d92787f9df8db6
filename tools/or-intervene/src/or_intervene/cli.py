"""or-intervene: not built yet; the command says so (issue #5)."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(
    epilog=epilog(
        "or-gen < problems.jsonl | or-intervene --intervener gemini/gemini-2.5-pro | or-filter --golden > calm.jsonl"
    )
)
@io_options
def main(io) -> None:
    """CALM: an Intervener finds the first flaw, hints, and the Reasoner resumes from the cut.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-intervene", 5)
