"""or-view: look at trajectories. One record in the terminal, whole runs as a static HTML page,
and a lint (`--check`) for trajectories no tool should have let through."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from or_common.cli import EXIT_FAILED, EXIT_OK, epilog, silence_stdout
from or_common.jsonl import STDIN, BadLine, Line, read_lines, source_name
from or_common.usage import Complaints, check_output_path, echo_err

from .page import DEFAULT_MAX_RECORDS


def _records(paths: tuple[str, ...], complaints: Complaints) -> Iterator[Line]:
    for item in read_lines(paths):
        if isinstance(item, BadLine):
            complaints.bad_line(item)
        else:
            yield item


def _counter(tokenizer: str | None):
    if tokenizer is None:
        return None
    from or_common.tokens import TokenizerError, count_tokens, load_tokenizer

    try:
        tok = load_tokenizer(tokenizer, light=True)
    except TokenizerError as exc:
        raise click.UsageError(f"--tokens {exc}") from None
    return lambda text: count_tokens(tok, text)


def _matches(record: dict[str, Any], rid: str | None, sample: int | None) -> bool:
    if rid is not None and str(record.get("id")) != rid:
        return False
    return sample is None or record.get("sample") == sample


def run_check(paths: tuple[str, ...], complaints: Complaints, quiet: bool) -> int:
    """Print each lint finding as `FILE:LINE: ID sample S: CODE: message`; exit 1 if any."""
    from .lint import lint_record

    records = flagged = findings = 0
    for line in _records(paths, complaints):
        records += 1
        found = lint_record(line.record)
        if found:
            flagged += 1
            findings += len(found)
        rec = line.record
        for f in found:
            click.echo(
                f"{line.where()}: {rec.get('id')} sample {rec.get('sample')}: {f.code}: {f.message}"
            )
    if not quiet:
        echo_err(f"or-view --check: {records} records, {flagged} with {findings} findings")
    return EXIT_FAILED if flagged or complaints.total else EXIT_OK


def page(
    paths: tuple[str, ...],
    output: str,
    labels: tuple[str, ...],
    max_records: int,
    title: str | None,
    count: Any,
    complaints: Complaints,
    quiet: bool,
) -> int:
    """Write the HTML page of every input (one run per input)."""
    from .page import RunViews, build_page

    runs = []
    for i, path in enumerate(paths):
        label = labels[i] if i < len(labels) else Path(source_name(path)).name
        run = RunViews(label, source_name(path), max_records)
        for line in _records((path,), complaints):
            run.add(line.record, count)
        runs.append(run)
    title = title or "or-view: " + " vs ".join(r.label for r in runs)
    Path(output).write_text(build_page(runs, title), encoding="utf-8")
    if not quiet:
        for run in runs:
            echo_err(f"or-view: {run.caption()}")
        echo_err(f"or-view: wrote {output}")
    return EXIT_FAILED if complaints.total else EXIT_OK


def terminal(
    paths: tuple[str, ...],
    rid: str | None,
    sample: int | None,
    count: Any,
    complaints: Complaints,
    width: int | None,
    color: bool | None,
    pager: bool | None,
) -> int:
    """Render the first record that matches --id / --sample."""
    from rich.console import Console

    from .model import view
    from .terminal import render

    found = next(
        (ln for ln in _records(paths, complaints) if _matches(ln.record, rid, sample)), None
    )
    if found is None:
        what = f"id {rid}" if rid is not None else "any record"
        what += f", sample {sample}" if sample is not None else ""
        raise click.ClickException(f"no record with {what} in {', '.join(paths)}")
    interactive = sys.stdout.isatty()
    use_pager = interactive if pager is None else pager
    colored = color if color is not None else interactive
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=width or (shutil.get_terminal_size().columns if interactive else 100),
        force_terminal=colored,
        no_color=not colored,
        color_system="truecolor" if colored else None,
        highlight=False,
        emoji=False,
    )
    render(view(found.record, count), console)
    text = buffer.getvalue()
    lines = text.count("\n")
    if use_pager and lines > shutil.get_terminal_size().lines:
        command = os.environ.get("PAGER") or "less -R"
        env = {**os.environ, "LESS": os.environ.get("LESS", "-R")}
        subprocess.run(command, shell=True, input=text.encode(), env=env, check=False)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_FAILED if complaints.total else EXIT_OK


@click.command(
    epilog=epilog(
        "or-view runs/demo/04-calm.jsonl --id nl4opt-8 --sample 1",
        "or-view base.jsonl storm.jsonl --label base --label STORM -o compare.html",
        "or-view calm.jsonl --check || echo 'malformed trajectories'",
        "or-gen problems.jsonl ... | or-view - --color | less -R",
    )
)
@click.argument("inputs", nargs=-1, type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--id", "rid", metavar="ID", help="The record to show (default: the first).")
@click.option("--sample", type=int, help="Its sample (default: the first with that id).")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write a self-contained HTML page of every record to FILE (one run per input).",
)
@click.option(
    "--max-records",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_RECORDS,
    show_default=True,
    help="Per run, the page keeps the first N records plus every failing one after them.",
)
@click.option("--label", multiple=True, help="A name per input run on the page (repeatable).")
@click.option("--title", help="The page's title.")
@click.option(
    "--check",
    is_flag=True,
    help="Lint every record: print FILE:LINE: ID sample S: CODE: message; exit 1 if any.",
)
@click.option(
    "--tokens",
    "tokenizer",
    metavar="TOKENIZER",
    help="Count tokens per segment with this tokenizer (local directory or hub name).",
)
@click.option("--width", type=click.IntRange(min=40), help="Terminal view width in columns.")
@click.option(
    "--color/--no-color", default=None, help="Colours in the terminal view (default: on a tty)."
)
@click.option("--pager/--no-pager", default=None, help="Page a long view (default: on a tty).")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def main(
    inputs: tuple[str, ...],
    rid: str | None,
    sample: int | None,
    output: str | None,
    max_records: int,
    label: tuple[str, ...],
    title: str | None,
    check: bool,
    tokenizer: str | None,
    width: int | None,
    color: bool | None,
    pager: bool | None,
    quiet: bool,
) -> None:
    """Look at trajectories: one record in the terminal (segments coloured by role, code and
    output highlighted, execution status and seconds, each Intervener cut with the text it
    removed and the hint it inserted, sizes per segment, score, finish, lint findings), or with
    -o a static HTML page of whole runs (sortable, filterable table; each record's flow; two
    runs of the same problems side by side), or --check to lint every record."""
    paths = inputs or (STDIN,)
    complaints = Complaints()
    try:
        if output:
            check_output_path(output, paths)
            if check:
                raise click.UsageError("--check and -o are separate uses; run them apart")
            code = page(
                paths, output, label, max_records, title, _counter(tokenizer), complaints, quiet
            )
        elif check:
            code = run_check(paths, complaints, quiet)
        else:
            code = terminal(
                paths, rid, sample, _counter(tokenizer), complaints, width, color, pager
            )
    except BrokenPipeError:
        silence_stdout()
        sys.exit(EXIT_OK)
    finally:
        complaints.close()
    sys.exit(code)
