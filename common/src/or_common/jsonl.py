"""Streaming JSONL through the `jsonlines` package (orjson as its codec): read records line by
line from files or stdin, write them one flushed line at a time, and find what an interrupted
run already wrote."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import sys
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, cast

import orjson

from .records import Key, record_key

STDIN = "-"


class BadLine(ValueError):
    """A line that is not a JSON object; carries where it was found."""

    def __init__(self, source: str, lineno: int, message: str, kind: str | None = None):
        super().__init__(f"{source}:{lineno}: {message}")
        self.source = source
        self.lineno = lineno
        self.message = message
        #: the message without line-specific detail, to count repeats of one problem
        self.kind = kind or message


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


GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: str) -> BinaryIO:
    """Open a path for reading bytes: `-` is stdin; gzip data (found by its magic bytes, so a
    compressed stdin or a `.gz` file under another name works too) is decompressed on the fly."""
    stream: BinaryIO
    if path == STDIN:
        stream = cast(BinaryIO, getattr(sys.stdin, "buffer", sys.stdin))
        if not hasattr(stream, "peek"):
            stream = io.BufferedReader(stream)  # type: ignore[type-var]  # typeshed wants a RawIOBase; any binary stream reads the same
    else:
        stream = open(path, "rb", buffering=1 << 20)
    try:
        magic = stream.peek(2)[:2]  # type: ignore[attr-defined]  # typeshed's BinaryIO has no peek; each stream here does
    except (AttributeError, OSError, ValueError):
        magic = b""
    if magic == GZIP_MAGIC:
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb"))
    return stream


def _not_json(cause: BaseException | None, raw: bytes | str) -> tuple[str, str]:
    """(message, kind) for a line jsonlines could not decode; `kind` leaves out the snippet so
    that repeats of one problem can be counted together."""
    if isinstance(cause, UnicodeDecodeError):
        kind = "not valid JSON (not UTF-8 text)"
    else:
        detail = str(cause.args[0]) if cause is not None and cause.args else "bad JSON"
        kind = f"not valid JSON ({detail.split(':')[0]})"
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "replace")
    snippet = raw.rstrip(b"\r\n")[:60].decode("utf-8", "replace")
    return f"{kind}: {snippet!r}", kind


def _parse(
    source: str,
    lines: Iterable[bytes],
    on_bytes: Callable[[int], None] | None = None,
    seen: list | None = None,
) -> Iterator[Line | BadLine]:
    """Decode raw lines through `jsonlines` with orjson as its `loads`; blank lines are skipped
    and line numbers stay those of the input."""
    import jsonlines  # imported here: its attrs classes cost tens of ms that --help need not pay

    seen = seen if seen is not None else [0, b""]  # lines consumed, the last raw line

    def raw_lines() -> Iterator[bytes]:
        for raw in lines:
            if on_bytes is not None:
                on_bytes(len(raw))
            seen[0] += 1
            seen[1] = raw
            yield raw

    reader = jsonlines.Reader(raw_lines(), loads=orjson.loads)
    while True:
        try:
            value = reader.read(allow_none=True, skip_empty=True)
        except EOFError:
            return
        except jsonlines.InvalidLineError as exc:
            raw = seen[1]
            if not raw.endswith(b"\n"):
                yield BadLine(source, exc.lineno, TRUNCATED, TRUNCATED)
            else:
                message, kind = _not_json(exc.__cause__, raw)
                yield BadLine(source, exc.lineno, message, kind)
            continue
        if isinstance(value, dict):
            yield Line(source, seen[0], value)
        else:
            kind = f"expected a JSON object, got {type(value).__name__}"
            yield BadLine(source, seen[0], kind, kind)


def read_lines(
    paths: Iterable[str], on_bytes: Callable[[int], None] | None = None
) -> Iterator[Line | BadLine]:
    """Yield every record of every input as a `Line`, or a `BadLine` in place of a line that
    holds no JSON object (and of an input that cannot be opened or read to its end)."""
    for path in paths:
        source = source_name(path)
        try:
            stream = open_binary(path)
        except OSError as exc:
            yield BadLine(source, 0, f"cannot open: {exc.strerror or exc}")
            continue
        seen: list = [0, b""]
        try:
            yield from _parse(source, stream, on_bytes, seen)
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            yield BadLine(source, 0, f"read error after line {seen[0]}: {exc}")
        finally:
            if path != STDIN:
                stream.close()


TRUNCATED = "truncated last line (no newline; a crashed writer?)"


def decode(raw: bytes, source: str, lineno: int) -> dict[str, Any]:
    """Parse one line into a dict, or raise BadLine saying what is wrong."""
    for item in _parse(source, [raw]):
        if isinstance(item, BadLine):
            raise BadLine(source, lineno, item.message, item.kind)
        return item.record
    raise BadLine(source, lineno, "blank line")


def read_records(paths: Iterable[str]) -> Iterator[dict[str, Any] | BadLine]:
    """Yield each record, or a BadLine in its place; the caller decides what to do with it."""
    for item in read_lines(paths):
        yield item if isinstance(item, BadLine) else item.record


def dumps(record: Any) -> bytes:
    """One JSON line (with its newline). Falls back to the stdlib for what orjson refuses."""
    return _dumps(record) + b"\n"


def _dumps(record: Any) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        import json

        return json.dumps(record, ensure_ascii=False, default=str).encode()


class _OneWrite(io.RawIOBase):
    """Gathers what jsonlines writes for one record (the JSON, then the newline) and hands it to
    the stream in one write when jsonlines flushes, so a record never reaches a file in parts."""

    def __init__(self, stream: BinaryIO | IO[bytes]):
        super().__init__()
        self.stream = stream
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        if not self.parts:
            return
        data = b"".join(self.parts)
        self.parts.clear()
        view = memoryview(data)
        while view:
            n = self.stream.write(view)
            if n is None or n >= len(view):
                break
            view = view[n:]  # a raw stream may take part of it (a pipe, a signal)
        self.stream.flush()

    def close(self) -> None:  # the stream belongs to the caller
        self.parts.clear()
        super().close()


class Writer:
    """Writes records as JSON lines through `jsonlines` (orjson as its `dumps`), flushing each
    line so a crash never leaves half a record behind a complete one (at worst a truncated last
    line, which resume repairs)."""

    def __init__(self, stream: BinaryIO | IO[bytes]):
        import jsonlines

        self.stream = stream
        # jsonlines types its stream as IO, but needs only write and flush: a RawIOBase serves
        self._lines = jsonlines.Writer(cast(IO[bytes], _OneWrite(stream)), dumps=_dumps, flush=True)
        self.count = 0

    def write(self, record: Any) -> None:
        self._lines.write(record)
        self.count += 1

    def close(self) -> None:
        self.stream.flush()


def open_output(path: str, append: bool) -> BinaryIO:
    if path.endswith(".gz"):
        return cast(BinaryIO, gzip.open(path, "ab" if append else "wb"))
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


def prepare_resume(
    path: str,
    key: Callable[[dict[str, Any]], Key] = record_key,
    failed: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[set[Key], str | None]:
    """The keys already done in an output file, for `--resume`, and a note of what was removed.

    A record for which `failed` is true (written with an error: a server down, a key missing)
    is not done: it is removed so the rerun can write it again, and so is any second record of
    one key. The file is then rewritten through a temporary file in the same directory renamed
    over it, so a crash while rewriting leaves either the old file or the new one.
    """
    done: set[Key] = set()
    if not os.path.exists(path):
        return done, None
    n_failed = n_repeat = n_junk = 0
    for item in read_lines([path]):
        if isinstance(item, BadLine):
            n_junk += 1
            continue
        try:
            k = key(item.record)
        except (KeyError, TypeError):
            continue
        if failed is not None and failed(item.record):
            n_failed += 1
        elif k in done:
            n_repeat += 1
        else:
            done.add(k)
    if not (n_failed or n_repeat):
        return done, None
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        kept: set[Key] = set()
        with open_output(tmp, append=False) as stream:
            writer = Writer(stream)
            for item in read_lines([path]):
                if isinstance(item, BadLine):
                    continue
                record = item.record
                try:
                    k = key(record)
                except (KeyError, TypeError):
                    writer.write(record)
                    continue
                if (failed is not None and failed(record)) or k in kept:
                    continue
                kept.add(k)
                writer.write(record)
            stream.flush()
            if hasattr(stream, "fileno"):
                os.fsync(stream.fileno())
        shutil.copymode(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    parts = []
    if n_failed:
        parts.append(f"{n_failed} written with an error (they are redone)")
    if n_repeat:
        parts.append(f"{n_repeat} repeated")
    if n_junk:
        parts.append(f"{n_junk} unreadable lines")
    return done, "removed " + ", ".join(parts)


def write_json(path: str, data: Any) -> None:
    """Write `data` to `path` as indented JSON, atomically: through a temporary file in the same
    directory renamed over it, so a reader never sees half a file (a stats file, like
    datatrove's stats/*.json, that a recipe renders after the run)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 is for secrets; this is a report
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
