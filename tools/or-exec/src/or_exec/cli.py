"""or-exec: not built yet; the command says so (issue #3)."""

from __future__ import annotations

import click
from or_common.cli import epilog, io_options, not_implemented


@click.command(epilog=epilog("or-exec run.jsonl --timeout 10 > rerun.jsonl", "or-exec doctor"))
@io_options
def main(io) -> None:
    """Run model-written Python in a fast, isolated sandbox (the last code block of each record).

    Not implemented yet: this command exits with status 2.
    """
    not_implemented("or-exec", 3)
