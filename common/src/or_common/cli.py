"""What every `or-*` command shares: the option bundle, the run loop around reading and
writing records, `FILE:LINE` errors, exit codes, progress on stderr and quiet `| head`."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

import click

from .concurrency import run_concurrently, threaded_aiter
from .errors import FailureTally
from .guard import stdout_guard
from .jsonl import (
    STDIN,
    BadLine,
    Line,
    Writer,
    open_output,
    prepare_resume,
    read_lines,
    repair_tail,
)
from .progress import RecordStream, RunProgress, stderr_is_terminal
from .records import TOOL_KEYS, Key, RecordError, record_key, set_error
from .usage import (
    EXIT_USAGE,
    Complaints,
    UsageLine,
    check_distinct_outputs,
    check_output_path,
    echo_err,
)

# re-exported: the tools import these from here
__all__ = [
    "EXIT_USAGE",
    "Complaints",
    "UsageLine",
    "check_distinct_outputs",
    "check_output_path",
    "echo_err",
]

EXIT_OK = 0
EXIT_FAILED = 1

log = logging.getLogger("calm_storm")


@dataclass
class IOOptions:
    """The shared options, as one object handed to each command."""

    inputs: tuple[str, ...] = (STDIN,)
    output: str | None = None
    resume: bool = False
    limit: int | None = None
    shard: tuple[int, int] | None = None
    strict: bool = False
    quiet: bool = False
    verbose: int = 0


def _parse_shard(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise click.BadParameter("expected I/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise click.BadParameter("need 0 <= I < N")
    return (i, n)


def io_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the shared options to a click command; it receives them as `io: IOOptions`."""

    @functools.wraps(func)
    def wrapper(
        *args: Any, inputs, output, resume, limit, shard, strict, quiet, verbose, **kwargs: Any
    ):
        opts = IOOptions(inputs or (STDIN,), output, resume, limit, shard, strict, quiet, verbose)
        if resume and not output:
            raise click.UsageError("--resume needs -o/--output (the file to resume)")
        check_output_path(output, opts.inputs)
        return func(*args, io=opts, **kwargs)

    decorators = [
        click.argument("inputs", nargs=-1, type=click.Path(allow_dash=True, dir_okay=False)),
        click.option(
            "-o",
            "--output",
            type=click.Path(dir_okay=False),
            help="Write records here instead of stdout.",
        ),
        click.option(
            "--resume",
            is_flag=True,
            help="Skip records whose (id, sample) is already in -o FILE and append the rest;"
            " records written there with an error are removed and redone.",
        ),
        click.option("--limit", type=click.IntRange(min=0), help="Read at most N input records."),
        click.option(
            "--shard",
            callback=_parse_shard,
            metavar="I/N",
            help="Process only shard I of N (by hash of id).",
        ),
        click.option(
            "--strict",
            is_flag=True,
            help="Stop at the first bad input line instead of skipping it.",
        ),
        click.option(
            "-q", "--quiet", is_flag=True, help="No progress bar and no summary on stderr."
        ),
        click.option("-v", "--verbose", count=True, help="More logging on stderr (-vv for debug)."),
    ]
    for decorate in reversed(decorators):
        wrapper = decorate(wrapper)
    return wrapper


def shard_of(record_id: Any, n: int) -> int:
    return zlib.crc32(str(record_id).encode()) % n


def setup_logging(verbose: int, quiet: bool) -> None:
    from rich.console import Console
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 else logging.WARNING
    if quiet and not verbose:
        level = logging.ERROR
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=False)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@dataclass
class ToolRun:
    """One run of a tool over its inputs.

    Use as a context manager: iterate `records()`, call `write()` for each output record,
    `bad()` for a record the tool cannot use, and read `exit_code` at the end. It handles the
    stdout guard, `--resume`, `--limit`, `--shard`, progress, the closing summary and a
    consumer that closed the pipe.
    """

    tool: str
    io: IOOptions
    key: Callable[[dict[str, Any]], Key] = record_key
    #: Decides whether an input record is already done given the keys found in the output.
    is_done: Callable[[dict[str, Any], set[Key]], bool] | None = None
    unit: str = "records"
    #: output records each input record becomes (or-gen: samples per problem), for progress
    per_record: int = 1

    n_in: int = 0
    n_out: int = 0
    n_bad: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    done: set[Key] = field(default_factory=set)
    complaints: Complaints = field(default_factory=Complaints)
    _stack: ExitStack = field(default_factory=ExitStack)
    _writer: Writer | None = None
    failures: FailureTally | None = None
    _progress: RunProgress | None = None
    _ahead: bool = False

    def __enter__(self) -> ToolRun:
        setup_logging(self.io.verbose, self.io.quiet)
        self.failures = FailureTally(self.tool, self._say, every=self.io.verbose > 0)
        real_stdout = self._stack.enter_context(stdout_guard())
        if self.io.output:
            try:
                if self.io.resume:
                    self._prepare_resume(self.io.output)
                stream = open_output(self.io.output, append=self.io.resume)
            except OSError as exc:
                self._stack.close()
                raise UsageLine(f"cannot write {self.io.output}: {exc.strerror or exc}") from None
            self._stack.callback(stream.close)
        else:
            stream = real_stdout
        self._writer = Writer(stream)
        self._start_progress()
        return self

    def _prepare_resume(self, path: str) -> None:
        """Repair a torn last line, then find what is done; records this tool wrote with an
        error under its own key are not done (they are removed and redone)."""
        note = repair_tail(path)
        if note:
            echo_err(f"{path}: {note}")
        own = TOOL_KEYS.get(self.tool, self.tool)

        def failed(record: dict[str, Any]) -> bool:
            section = record.get(own)
            return isinstance(section, dict) and bool(section.get("error"))

        self.done, note = prepare_resume(path, self.key, failed)
        if note:
            echo_err(f"{path}: {note}")

    def __exit__(self, exc_type, exc, tb) -> Literal[False]:
        if self._progress is not None:
            self._progress.stop()
        self.complaints.close()
        try:
            self._stack.close()
        except BrokenPipeError:
            exc_type = BrokenPipeError
        if exc_type is BrokenPipeError:
            silence_stdout()
            sys.exit(EXIT_OK)
        if exc_type is None and not self.io.quiet:
            echo_err(self.summary())
            if self.failures is not None:
                for line in self.failures.lines():
                    echo_err(line)
        return False

    # -- input -------------------------------------------------------------------------------
    def _start_progress(self) -> None:
        if self.io.quiet or not stderr_is_terminal():
            return
        total = None
        if all(p != STDIN and not p.endswith(".gz") and os.path.isfile(p) for p in self.io.inputs):
            total = sum(os.path.getsize(p) for p in self.io.inputs)
        self._progress = RunProgress(self.tool, self.unit, total, self.per_record)
        self._progress.start()

    def _finish(self, units: int) -> None:
        if self._progress is not None:
            self._progress.finish(units)

    def status(self, text: str) -> None:
        """Tool-specific figures shown after the counts (e.g. tokens/s), when progress is on."""
        if self._progress is not None:
            self._progress.status(text)

    def records(self) -> Iterator[Line]:
        """Yield each usable input record; bad lines are reported and skipped. A consumer that
        reads ahead (`threaded_aiter`) says so, and its records count as finished when written."""
        return RecordStream(self._read(), self._reading_ahead)

    def _reading_ahead(self) -> None:
        self._ahead = True

    def _read(self) -> Iterator[Line]:
        progress = self._progress
        on_bytes = progress.read if progress is not None else None
        handed_out = False  # a record is with the consumer
        for item in read_lines(self.io.inputs, on_bytes):
            if handed_out and not self._ahead:  # the consumer is back: that record is done
                self._finish(self.per_record)
            handed_out = False
            if self.io.limit is not None and self.n_in >= self.io.limit:
                break
            if progress is not None:
                progress.take()
            if isinstance(item, BadLine):
                if item.lineno:
                    self.n_in += 1
                self.bad(item.source, item.lineno, item.message, item.kind)
                self._finish(self.per_record)
                continue
            self.n_in += 1
            record = item.record
            if self.io.shard is not None:
                i, n = self.io.shard
                if shard_of(record.get("id"), n) != i:
                    self._finish(self.per_record)
                    continue
            if self.done and self._already_done(record):
                self.n_skipped += 1
                self._finish(self.per_record)
                continue
            handed_out = True
            yield item
        if handed_out and not self._ahead:
            self._finish(self.per_record)

    def _already_done(self, record: dict[str, Any]) -> bool:
        if self.is_done is not None:
            return self.is_done(record, self.done)
        try:
            return self.key(record) in self.done
        except (KeyError, TypeError):
            return False

    # -- output ------------------------------------------------------------------------------
    def write(self, record: dict[str, Any]) -> None:
        """Write one output record; one that carries an error under the tool's own key is
        said on stderr when it is the first of its cause, and counted by cause for the summary."""
        assert self._writer is not None
        self._writer.write(record)
        self.n_out += 1
        if self.failures is not None:
            self.failures.add_record(record, TOOL_KEYS.get(self.tool, self.tool))
        if self._ahead:
            self._finish(1)

    def _say(self, text: str) -> None:
        """One line on stderr, above the progress display when there is one."""
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False, soft_wrap=True)
        else:
            echo_err(text)

    def bad(self, source: str, lineno: int, message: str, kind: str | None = None) -> None:
        """Report unusable input as `FILE:LINE: message` (repeats of one kind are capped); with
        --strict, stop at once."""
        self.n_bad += 1
        self.complaints.emit = self._say
        self.complaints(f"{source}:{lineno}" if lineno else source, message, kind)
        if self.io.strict:
            raise click.ClickException("stopping at the first bad line (--strict)")

    def bad_record(self, line: Line, error: RecordError) -> None:
        self.bad(line.source, line.lineno, str(error))
        if self._ahead:  # a record read ahead is done once it is judged unusable
            self._finish(self.per_record)

    def failed(self) -> None:
        """Count a record that was written with an error under the tool's key."""
        self.n_failed += 1

    @property
    def exit_code(self) -> int:
        return EXIT_FAILED if (self.n_bad or self.n_failed) else EXIT_OK

    def summary(self) -> str:
        parts = [f"{self.n_in} in", f"{self.n_out} out"]
        if self.n_skipped:
            parts.append(f"{self.n_skipped} already done")
        if self.n_bad:
            parts.append(f"{self.n_bad} bad input")
        if self.n_failed:
            parts.append(f"{self.n_failed} failed")
        return f"{self.tool}: " + ", ".join(parts)


def silence_stdout() -> None:
    """After the reader went away, point stdout at /dev/null so the interpreter's final flush
    does not print a BrokenPipeError traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def map_records(
    tool: str, io: IOOptions, fn: Callable[[dict[str, Any]], dict[str, Any]], **kwargs: Any
) -> int:
    """Run `fn` over every record and write what it returns; `RecordError` marks bad input.
    Returns the exit code."""
    with ToolRun(tool, io, **kwargs) as run:
        for line in run.records():
            try:
                out = fn(line.record)
            except RecordError as err:
                run.bad_record(line, err)
                continue
            run.write(out)
    return run.exit_code


#: One unit of work: the input line it came from, and the arguments of the tool's function.
Work = tuple[Line, tuple[Any, ...]]
#: a unit of work done: its line and the record to write, or the bad input to report
Done = tuple[Line, dict[str, Any] | RecordError]


def amap_records(
    run: ToolRun,
    fn: Callable[..., Awaitable[dict[str, Any]]],
    *,
    concurrency: int,
    ordered: bool = False,
    parts: Callable[[dict[str, Any]], Iterable[Any]] | None = None,
    failure: Callable[..., dict[str, Any]] | None = None,
    start: Callable[[], Awaitable[Any]] | None = None,
    first: Callable[[], Awaitable[Any]] | None = None,
    close: Callable[[], Awaitable[Any]] | None = None,
) -> None:
    """The async twin of `map_records`, over an open `run`: await `fn(record)` for every input
    record (or `fn(record, part)` for each of `parts(record)`: or-gen's samples) at most
    `concurrency` at a time, and write what it returns, in completion order (`ordered`: in
    input order, at most `concurrency` read ahead of the oldest unwritten one).

    A `RecordError` (from `parts` or `fn`) is bad input, said as `FILE:LINE`. A
    `click.ClickException` ends the run with its message (e.g. the engine died). Any other
    exception is a bug in one record's work, not a reason to lose the record: it is logged
    (with its traceback the first time) and the record is written with an error under the
    tool's own key (`records.set_error`), built on `failure(*args)` when given, else on the input
    record with that key emptied. A record written with an error is counted as failed (exit 1).
    `start` is awaited before the first record is read (what makes the run impossible fails
    there), `first` when the first record with work arrives (heavy parts built only when there
    is work; what it raises ends the run), `close` at the end, whatever happened."""
    asyncio.run(_amap(run, fn, concurrency, ordered, parts, failure, start, first, close))


async def _amap(
    run: ToolRun,
    fn: Callable[..., Awaitable[dict[str, Any]]],
    concurrency: int,
    ordered: bool,
    parts: Callable[[dict[str, Any]], Iterable[Any]] | None,
    failure: Callable[..., dict[str, Any]] | None,
    start: Callable[[], Awaitable[Any]] | None,
    first: Callable[[], Awaitable[Any]] | None,
    close: Callable[[], Awaitable[Any]] | None,
) -> None:
    own = TOOL_KEYS.get(run.tool, run.tool)

    async def work() -> AsyncIterator[Work]:
        waiting = first
        async for line in threaded_aiter(iter(run.records())):
            if parts is None:
                todo: list[tuple[Any, ...]] = [(line.record,)]
            else:
                try:
                    todo = [(line.record, part) for part in parts(line.record)]
                except RecordError as err:
                    run.bad_record(line, err)
                    continue
            for args in todo:
                if waiting is not None:
                    await waiting()
                    waiting = None
                yield line, args

    async def result(item: Work) -> Done:
        """What to write for one unit of work: the record, or the bad input to report (reported
        when it is written, so that in input order a --strict stop comes at its line)."""
        line, args = item
        try:
            return line, await fn(*args)
        except RecordError as err:
            return line, err
        except click.ClickException:
            raise
        except Exception as exc:  # a bug must not lose the record: an error record, exit 1
            where = line.where() if len(args) == 1 else f"{line.where()} ({args[1]})"
            log.error("%s failed on %s", run.tool, where, exc_info=not run.n_failed)
            if failure is not None:
                record = failure(*args)
            else:
                record = line.record
                record[own] = {}
            return line, set_error(record, run.tool, type(exc).__name__, str(exc)[:500])

    def write(done: Done) -> None:
        line, out = done
        if isinstance(out, RecordError):
            run.bad_record(line, out)  # --strict: raises, and the run stops here
            return
        section = out.get(own)
        if isinstance(section, dict) and "error" in section:
            run.failed()
        run.write(out)

    async def one(item: Work) -> None:
        write(await result(item))

    try:
        if start is not None:
            await start()
        if ordered:
            await _in_order(work(), concurrency, result, write)
        else:
            await run_concurrently(work(), concurrency, one)
    finally:
        if close is not None:
            await close()


async def _in_order(
    items: AsyncIterator[Work],
    window: int,
    result: Callable[[Work], Coroutine[Any, Any, Done]],
    write: Callable[[Done], None],
) -> None:
    """Run `result` on each item as it is read, at most `window` pending, and write the results
    in input order. When reading stops early (--strict on a bad line), what was read before is
    still written; when a result or a write fails (a --strict stop at a bad record), nothing
    after it is written and the work still pending is cancelled."""
    pending: deque[asyncio.Task[Done]] = deque()
    try:
        while True:
            try:
                item = await anext(items)
            except StopAsyncIteration:
                break
            except Exception:
                while pending:
                    write(await pending.popleft())
                raise
            pending.append(asyncio.create_task(result(item)))
            while len(pending) >= window or (pending and pending[0].done()):
                write(await pending.popleft())
        while pending:
            write(await pending.popleft())
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


def report_format_option(func: Callable[..., Any]) -> Callable[..., Any]:
    """`--format table|markdown|json` for report commands (passed as `fmt`)."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "markdown", "json"]),
        default="table",
        show_default=True,
        help="table goes to the terminal (to stderr when stdout is a pipe); markdown and json to stdout.",
    )(func)


EPILOG_HEADER = "Examples:"


def epilog(*lines: str) -> str:
    """An `Examples:` block for `--help` (click keeps the lines as written after \\b)."""
    return "\b\n" + EPILOG_HEADER + "\n" + "\n".join(f"  {line}" for line in lines)


class DefaultGroup(click.Group):
    """A group that runs `default` when the first argument is not one of its subcommands, so
    `or-score run.jsonl` and `or-score report run.jsonl` both work."""

    def __init__(self, *args: Any, default: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = [self.default, *args]
        return super().parse_args(ctx, args)
