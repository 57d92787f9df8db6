"""What a tool tells its user about a run as a whole: the checks that make it impossible, made
before the first record is read (each fails with one line on stderr and exit 2, never a
traceback), and the complaints about bad input, capped so that junk cannot flood stderr."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable

import click

from .jsonl import STDIN, BadLine

EXIT_USAGE = 2


class UsageLine(click.ClickException):
    """A run that cannot start (exit 2), said in one line on stderr: no usage block, no traceback."""

    exit_code = EXIT_USAGE


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_path(path: str | None, inputs: tuple[str, ...] = (), option: str = "-o") -> None:
    """Refuse, before anything is read or written, an output that is one of the inputs (opening
    it would empty it) or that lies in a directory that does not exist."""
    if path is None:
        return
    for source in inputs:
        if source != STDIN and _same_file(source, path):
            raise UsageLine(
                f"{option} {path} is also an input: writing it would destroy it before it is read; "
                "write to another file"
            )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageLine(f"{option} {path}: directory {parent} does not exist; create it first")


def check_distinct_outputs(*outputs: tuple[str, str | None]) -> None:
    """Refuse two output options naming one file (`("--stats", path), ("-o", path)`, ...): one
    written over the other would destroy it."""
    given = [(option, path) for option, path in outputs if path]
    for i, (option, path) in enumerate(given):
        for other_option, other in given[:i]:
            if os.path.abspath(path) == os.path.abspath(other):
                raise UsageLine(f"{option} {path} is also {other_option}: give each its own file")


def echo_err(message: str) -> None:
    """One line on stderr."""
    click.echo(message, err=True)


class Complaints:
    """`WHERE: message` lines on stderr, at most `limit` of each kind (a kind is the message
    without its line-specific detail); the rest are counted and summed up by `close()`, so 90
    lines of binary junk make a handful of lines, not a wall."""

    def __init__(self, emit: Callable[[str], None] | None = None, limit: int = 5):
        self.emit = emit or echo_err
        self.limit = limit
        self.counts: Counter = Counter()
        self.total = 0

    def __call__(self, where: str, message: str, kind: str | None = None) -> None:
        kind = kind or message
        self.counts[kind] += 1
        self.total += 1
        if self.counts[kind] <= self.limit:
            self.emit(f"{where}: {message}" if where else message)

    def bad_line(self, bad: BadLine) -> None:
        self(f"{bad.source}:{bad.lineno}" if bad.lineno else bad.source, bad.message, bad.kind)

    def close(self) -> None:
        for kind, n in self.counts.items():
            if n > self.limit:
                self.emit(f"... and {n - self.limit} more like this: {kind}")
        self.counts.clear()
