"""or-annotate: not built yet; the command says so (issue #6)."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(epilog=epilog("or-annotate run.jsonl --annotator rules | or-annotate report -"))
@io_options
def main(io) -> None:
    """Classify finished trajectories into the seven flaw triggers and report the distribution.

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-annotate", 6)
