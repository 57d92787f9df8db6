"""Streaming JSONL: read records line by line from files or stdin, write them one flushed line
at a time, and find what an interrupted run already wrote (SPEC §4)."""

from __future__ import annotations

import gzip
import io
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import orjson

from .records import Key, record_key

STDIN = "-"


class BadLine(ValueError):
    """A line that is not a JSON object; carries where it was found."""

    def __init__(self, source: str, lineno: int, message: str):
        super().__init__(f"{source}:{lineno}: {message}")
        self.source = source
        self.lineno = lineno
        self.message = message


@dataclass(slots=True)
class Line:
    """One input record with where it came from (for `FILE:LINE` messages)."""

    source: str
    lineno: int
    record: dict[str, Any]

    def where(self) -> str:
        return f"{self.source}:{self.lineno}"


def source_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def open_binary(path: str) -> BinaryIO:
    """Open a path for reading bytes: `-` is stdin, `*.gz` is decompressed on the fly."""
    if path == STDIN:
        return getattr(sys.stdin, "buffer", sys.stdin)
    if path.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb", buffering=1 << 20)


def decode(raw: bytes, source: str, lineno: int) -> dict[str, Any]:
    """Parse one line into a dict, or raise BadLine saying what is wrong."""
    if not raw.endswith(b"\n"):
        truncated = True
    else:
        truncated = False
        raw = raw.rstrip(b"\r\n")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if truncated:
            raise BadLine(
                source, lineno, "truncated last line (no newline; a crashed writer?)"
            ) from None
        snippet = raw[:60].decode("utf-8", "replace")
        raise BadLine(
            source, lineno, f"not valid JSON ({exc.args[0].split(':')[0]}): {snippet!r}"
        ) from None
    if not isinstance(value, dict):
        raise BadLine(source, lineno, f"expected a JSON object, got {type(value).__name__}")
    return value


def iter_raw(
    paths: Iterable[str], on_bytes: Callable[[int], None] | None = None
) -> Iterator[tuple[str, int, bytes]]:
    """Yield `(source, lineno, raw_line)` for every non-blank line of every input."""
    for path in paths:
        source = source_name(path)
        try:
            stream = open_binary(path)
        except OSError as exc:
            raise BadLine(source, 0, f"cannot open: {exc.strerror or exc}") from None
        try:
            for lineno, raw in enumerate(stream, 1):
                if on_bytes is not None:
                    on_bytes(len(raw))
                if raw.strip():
                    yield source, lineno, raw
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise BadLine(source, 0, f"read error: {exc}") from None
        finally:
            if path != STDIN:
                stream.close()


def read_records(paths: Iterable[str]) -> Iterator[dict[str, Any] | BadLine]:
    """Yield each record, or a BadLine in its place; the caller decides what to do with it."""
    for source, lineno, raw in iter_raw(paths):
        try:
            yield decode(raw, source, lineno)
        except BadLine as bad:
            yield bad


def dumps(record: Any) -> bytes:
    """One JSON line (with its newline). Falls back to the stdlib for what orjson refuses."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        import json

        return (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode()


class Writer:
    """Writes records as JSON lines, flushing each line so a crash never leaves half a record
    behind a complete one (at worst a truncated last line, which resume repairs)."""

    def __init__(self, stream: BinaryIO | IO[bytes]):
        self.stream = stream
        self.count = 0

    def write(self, record: Any) -> None:
        self.stream.write(dumps(record))
        self.stream.flush()
        self.count += 1

    def close(self) -> None:
        self.stream.flush()


def open_output(path: str, append: bool) -> BinaryIO:
    if path.endswith(".gz"):
        return gzip.open(path, "ab" if append else "wb")  # type: ignore[return-value]
    return open(path, "ab" if append else "wb", buffering=0)


def repair_tail(path: str) -> str | None:
    """Cut a truncated last line off an output file so appends start on a fresh line.

    Returns a description of what was removed, or None. A complete last line that is not valid
    JSON is also cut: only a writer that died mid-line leaves one, and it holds no record.
    """
    if path.endswith(".gz") or not os.path.exists(path):
        return None
    with open(path, "rb+") as fh:
        size = fh.seek(0, io.SEEK_END)
        if size == 0:
            return None
        # Find the start of the last line.
        block = min(size, 1 << 16)
        pos = size
        tail = b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            tail = fh.read(step) + tail
            cut = tail.rfind(b"\n", 0, len(tail) - 1)
            if cut >= 0:
                start = pos + cut + 1
                break
        else:
            start = 0
        fh.seek(start)
        last = fh.read()
        if last.endswith(b"\n"):
            try:
                if isinstance(orjson.loads(last), dict):
                    return None
            except orjson.JSONDecodeError:
                pass
        fh.truncate(start)
        return f"removed an incomplete last line of {len(last)} bytes"


def existing_keys(path: str, key: Callable[[dict[str, Any]], Key] = record_key) -> set[Key]:
    """Keys of every complete record already in an output file (for `--resume`)."""
    keys: set[Key] = set()
    if not os.path.exists(path):
        return keys
    for item in read_records([path]):
        if isinstance(item, BadLine):
            continue
        try:
            keys.add(key(item))
        except (KeyError, TypeError):
            continue
    return keys
