"""or-annotate: flaw triggers per trajectory, their distribution, and annotator agreement."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from or_common.cli import (
    Complaints,
    DefaultGroup,
    ToolRun,
    amap_records,
    check_output_path,
    echo_err,
    epilog,
    io_options,
    map_records,
    report_format_option,
)
from or_common.llm import close_clients
from or_common.providers import check_api_key
from or_common.records import check_trajectory


@click.group(
    cls=DefaultGroup,
    default="annotate",
    epilog=epilog(
        "or-annotate run.jsonl --annotator rules | or-annotate report -",
        "or-annotate report base.jsonl sft.jsonl storm.jsonl --format markdown --plot flaws.png",
        "or-annotate agree rules.jsonl human.jsonl",
    ),
)
def main() -> None:
    """Classify trajectories into flaw triggers (default command), report the distribution, or
    measure the agreement of two annotations."""


@main.command(
    "annotate",
    epilog=epilog(
        "or-annotate run.jsonl --annotator rules > flaws.jsonl",
        "or-annotate run.jsonl --annotator gemini/gemini-2.5-pro -o flaws.jsonl --resume",
    ),
)
@click.option(
    "--annotator", default="rules", show_default=True, help="rules, or a litellm model name."
)
@click.option("--api-base", metavar="URL")
@click.option("--api-key", envvar="ANNOTATOR_API_KEY")
@click.option("--temperature", type=float, default=0.0, show_default=True)
@click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True)
@click.option("--retry-backoff", type=float, default=1.0, show_default=True)
@click.option("--reask", type=click.IntRange(min=0), default=2, show_default=True)
@click.option("--concurrency", type=click.IntRange(min=1), default=32, show_default=True)
@io_options
def annotate_cmd(io, annotator: str, **opts: Any) -> None:
    """Write `flaws: {triggers, label, categories, annotator, prompt_version}`: at most two
    of the seven flaw triggers (1 premature solving by hand, 2 fragmented code, 3 redundant
    manual verification, 4 missing sanity check, 5 flawed modeling, 6 implementation error,
    7 protocol violation), or label "correct" when there are none."""
    from .annotate import annotate_rules

    if annotator != "rules":  # a missing key fails now, not after retries on every record
        check_api_key(
            annotator, opts["api_base"], opts["api_key"], "--annotator", "--api-key", "--api-base"
        )
    if annotator == "rules":
        sys.exit(map_records("or-annotate", io, annotate_rules))
    model: Any = None

    async def start() -> None:  # after the logging is set: litellm's loggers follow -v
        nonlocal model
        from .model import ModelAnnotator

        model = ModelAnnotator(annotator, opts)

    async def annotate(record: dict[str, Any]) -> dict[str, Any]:
        check_trajectory(record)
        return await model.annotate(record)

    with ToolRun("or-annotate", io) as run:
        amap_records(
            run, annotate, concurrency=opts["concurrency"], start=start, close=close_clients
        )
    sys.exit(run.exit_code)


@main.command(
    "report",
    epilog=epilog("or-annotate report base.jsonl storm.jsonl --format markdown --plot flaws.png"),
)
@click.argument("runs", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False))
@report_format_option
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Save a PNG chart of flaws per category.",
)
@click.option("--label", multiple=True, help="A name per run, in order (default: its file name).")
def report_cmd(
    runs: tuple[str, ...], fmt: str, plot_path: str | None, label: tuple[str, ...]
) -> None:
    """Mean flaws per trajectory by category and trigger, per benchmark, runs side by side."""
    from .report import distribution, label_of, load, plot, to_markdown

    check_output_path(plot_path, runs, "--plot")
    complaints = Complaints()
    results = []
    unannotated = []
    annotators: set[str] = set()
    for i, path in enumerate(runs):
        records = load(path, complaints.bad_line)
        if not records:
            unannotated.append(path)
        annotators.update(
            f"{r['flaws'].get('annotator', '?')} ({r['flaws'].get('prompt_version', '?')})"
            for r in records
        )
        results.append((label[i] if i < len(label) else label_of(path), distribution(records)))
    complaints.close()
    bad = complaints.total
    for path in unannotated:
        echo_err(
            f"or-annotate: {path} holds no annotated trajectory (no `flaws`); "
            f"annotate it first: or-annotate {path} | or-annotate report -"
        )
    if fmt == "json":
        click.echo(json.dumps({label: dist for label, dist in results}, indent=2))
    else:
        text = to_markdown(results)
        click.echo(text, err=fmt == "table" and not sys.stdout.isatty())
    if plot_path and any(dist for _, dist in results):
        title = "Flaw triggers per trajectory · annotator " + (", ".join(sorted(annotators)))
        plot(results, plot_path, title, list(runs))
        echo_err(f"or-annotate: wrote {plot_path}")
    elif plot_path:
        echo_err(f"or-annotate: nothing to plot, {plot_path} not written")
    sys.exit(1 if bad or unannotated else 0)


@main.command("agree", epilog=epilog("or-annotate agree rules.jsonl human.jsonl"))
@click.argument("a", type=click.Path(exists=True, dir_okay=False))
@click.argument("b", type=click.Path(exists=True, dir_okay=False))
def agree_cmd(a: str, b: str) -> None:
    """Agreement of annotation A with reference B on the same (id, sample): exact set match and
    per-trigger precision / recall."""
    from .report import agreement, load

    result = agreement(
        load(a, lambda item: echo_err(str(item))), load(b, lambda item: echo_err(str(item)))
    )
    click.echo(json.dumps(result, indent=2))
