"""or-score: score final answers, and report accuracy over runs."""

from __future__ import annotations

import sys

import click
import orjson
from or_common.cli import (
    EXIT_FAILED,
    EXIT_OK,
    Complaints,
    DefaultGroup,
    check_output_path,
    echo_err,
    epilog,
    io_options,
    map_records,
    report_format_option,
)
from or_common.scoring import PROTOCOLS

from .scorer import score_record

protocol_option = click.option(
    "--protocol",
    type=click.Choice(sorted(PROTOCOLS)),
    default="strict",
    show_default=True,
    help="strict: rel. error <= 1e-3 (the paper); orlm: ORLM's harness; sirl: SIRL's harness.",
)


@click.group(
    cls=DefaultGroup,
    default="score",
    epilog=epilog(
        "or-gen --model ckpt/storm < test.jsonl | or-score | or-score report -",
        "or-score run.jsonl --protocol orlm -o scored.jsonl",
        "or-score report base.jsonl sft.jsonl storm.jsonl --format markdown --plot table2.png",
    ),
)
def main() -> None:
    """Score trajectories (default command) or report accuracy over scored runs.

    `or-score [FILES]` extracts each trajectory's final answer (the last \\boxed{} after the
    thinking), compares it with the record's `answer` under a named protocol and writes
    `score: {prediction, boxed, correct, rel_error, reason, protocol, version}`.
    `or-score report RUN...` prints pass@1, pass@k, maj@k and failure reasons per benchmark.
    """


@main.command(
    "score",
    epilog=epilog(
        "or-gen --model ckpt/storm < test.jsonl | or-score > scored.jsonl",
        "or-score run.jsonl --protocol sirl -o scored.jsonl --resume",
    ),
)
@protocol_option
@io_options
def score_cmd(io, protocol: str) -> None:
    """Score each trajectory's final answer against its reference `answer`.

    Reasons: correct, wrong, no_answer (no number in a box after the thinking), truncated (the
    turn was cut by the token budget or the round cap, or is still inside a <think> it opened:
    no answer, never correct, even with a box; a turn that ended on its own without any think
    tag is read whole), exec_error (an error under `exec`, or the last
    code block failed and no answer followed), gen_error (an error under `gen`; errors other
    tools recorded, such as the Intervener's, do not change the verdict), no_reference (answer
    null: correct is null and the record is left out of accuracy).
    """
    sys.exit(map_records("or-score", io, lambda record: score_record(record, protocol)))


@main.command(
    "report",
    epilog=epilog(
        "or-score report scored.jsonl",
        "or-score report base.jsonl storm.jsonl --label base --label STORM --format markdown > table2.md",
        "or-score report run.jsonl --format json | jq .runs[0].macro",
    ),
)
@click.argument("runs", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False))
@protocol_option
@click.option(
    "--label", "labels", multiple=True, help="Name of each run, in order (default: file name)."
)
@click.option(
    "-k",
    "k",
    type=click.IntRange(min=1),
    help="k for pass@k (unbiased, over all n samples) and maj@k (a vote of the first k samples"
    " by index); default: samples per problem.",
)
@report_format_option
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    help="Also save a PNG bar chart of pass@1.",
)
def report_cmd(
    runs: tuple[str, ...],
    protocol: str,
    labels: tuple[str, ...],
    k: int | None,
    fmt: str,
    plot_path: str | None,
) -> None:
    """Accuracy per benchmark and macro average, several runs side by side with deltas.

    Each RUN is one file of scored (or unscored: they are scored on the fly) trajectories; the
    first run is the baseline the others are compared with.
    """
    from .report import load_run, plot, print_tables, summarize, to_markdown

    if labels and len(labels) != len(runs):
        raise click.UsageError(f"got {len(labels)} --label for {len(runs)} runs")
    check_output_path(plot_path, runs, "--plot")
    complaints = Complaints()
    summaries = []
    for i, path in enumerate(runs):
        run = load_run(path, protocol, labels[i] if labels else None, complaints.bad_line)
        summaries.append(summarize(run, k))
    complaints.close()
    bad = complaints.total
    for summary in summaries:
        if not summary["benchmarks"]:  # an empty table must not pass for a result
            bad += 1
            echo_err(f"or-score report: {summary['file']} holds no scorable record")
    summaries = [s for s in summaries if s["benchmarks"]]
    if not summaries:  # nothing to show: no table, no plot
        sys.exit(EXIT_FAILED)
    try:
        if fmt == "json" or (fmt == "table" and not sys.stdout.isatty()):
            sys.stdout.buffer.write(
                orjson.dumps({"protocol": protocol, "runs": summaries}, option=orjson.OPT_INDENT_2)
                + b"\n"
            )
        if fmt == "markdown":
            sys.stdout.write(to_markdown(summaries) + "\n")
        if fmt == "table":
            print_tables(summaries, sys.stdout if sys.stdout.isatty() else sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        from or_common.cli import silence_stdout

        silence_stdout()
    if plot_path:
        plot(summaries, plot_path)
        echo_err(f"or-score: wrote {plot_path}")
    sys.exit(EXIT_FAILED if bad else EXIT_OK)
