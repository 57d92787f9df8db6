"""or-score: score final answers, and report accuracy over runs."""

from __future__ import annotations

import sys

import click
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
from or_common.scoring import canonical_protocol, score_record


class ProtocolSpec(click.ParamType):
    """`NAME` or `NAME:TOL` (strict, orlm, sirl), turned into the name scores are stamped with."""

    name = "PROTOCOL"

    def convert(self, value, param, ctx):
        try:
            return canonical_protocol(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


PROTOCOL_HELP = (
    "strict: rel. error <= 1e-3 (the paper); orlm: ORLM's harness (rounded, 5 %); sirl: SIRL's"
    " harness (1e-6). NAME:TOL sets the tolerance (orlm:1e-4, strict:1e-6); it is stamped."
)
protocol_option = click.option(
    "--protocol",
    type=ProtocolSpec(),
    default="strict",
    show_default=True,
    help=PROTOCOL_HELP,
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
        "or-score orlm_outputs.jsonl --protocol orlm:1e-4 --execute > scored.jsonl",
    ),
)
@protocol_option
@click.option(
    "--execute",
    is_flag=True,
    help="Score a turn with no boxed answer by its last python block: the optimum it printed"
    " (its recorded output, else run now in or-exec's sandbox). Stamped `by: execution`.",
)
@click.option(
    "--exec-timeout",
    type=click.FloatRange(min=0.1),
    default=60.0,
    show_default=True,
    help="Seconds per program run by --execute.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1, max=128),
    help="Programs run at once by --execute (default: or-exec's).",
)
@io_options
def score_cmd(io, protocol: str, execute: bool, exec_timeout: float, workers: int | None) -> None:
    """Score each trajectory's final answer against its reference `answer`.

    Reasons: correct, wrong, no_answer (no number in a box after the thinking), truncated (the
    turn was cut by the token budget or the round cap, or is still inside a <think> it opened:
    no answer, never correct, even with a box; a turn that ended on its own without any think
    tag is read whole), exec_error (an error under `exec`, or the last
    code block failed and no answer followed), gen_error (an error under `gen`; errors other
    tools recorded, such as the Intervener's, do not change the verdict), no_reference (answer
    null: correct is null and the record is left out of accuracy).

    Besides or-gen's `flow`, a record may hold its response as a string `response` or
    `completion`, chat `messages` ending with the assistant turn, or OpenAI `choices`; an
    OpenAI `finish_reason` of `length` makes it truncated. `score.format` flags an answer not
    written as a lone number (units, formula, several_boxes) without changing the verdict.
    """
    if execute:
        from .scorer import score_by_execution

        sys.exit(score_by_execution(io, protocol, exec_timeout, workers))
    sys.exit(map_records("or-score", io, lambda record: score_record(record, protocol)))


def warn(message: str) -> None:
    echo_err(f"or-score report: warning: {message}")


@main.command(
    "report",
    epilog=epilog(
        "or-score report scored.jsonl",
        "or-score report base.jsonl storm.jsonl --label base --label STORM --format markdown > table2.md",
        "or-score report run.jsonl --format json | jq .runs[0].macro",
    ),
)
@click.argument("runs", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--protocol",
    "protocols",
    type=ProtocolSpec(),
    multiple=True,
    help="Judge every run under this protocol (once), or each run under its own (once per run,"
    " in order: one file twice under two protocols puts them side by side). Default: each"
    " run's own, when all its records carry a current score of one protocol, else strict. "
    + PROTOCOL_HELP,
)
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
@click.option(
    "--failures",
    "with_failures",
    is_flag=True,
    help="Also list every sample that is not correct: benchmark, id, sample, reason, prediction.",
)
def report_cmd(
    runs: tuple[str, ...],
    protocols: tuple[str, ...],
    labels: tuple[str, ...],
    k: int | None,
    fmt: str,
    plot_path: str | None,
    with_failures: bool,
) -> None:
    """Accuracy per benchmark and macro average, several runs side by side with deltas.

    Each RUN is one file of scored (or unscored: they are scored on the fly) trajectories; the
    first run is the baseline the others are compared with. Deltas are over the problems both
    runs judged; runs over different problem sets, duplicated (id, sample) pairs and protocols
    other than a run's own are warned of on stderr. pass@1 comes with its standard error over
    problems (±se).
    """
    from .report import add_deltas, emit, plot, summarize
    from .runs import load_runs

    if labels and len(labels) != len(runs):
        raise click.UsageError(f"got {len(labels)} --label for {len(runs)} runs")
    if len(protocols) not in (0, 1, len(runs)):
        raise click.UsageError(
            f"got {len(protocols)} --protocol for {len(runs)} runs: give one, or one per run"
        )
    check_output_path(plot_path, runs, "--plot")
    complaints = Complaints()
    loaded = load_runs(runs, protocols, labels, complaints.bad_line, warn)
    complaints.close()
    bad = complaints.total
    kept = []
    for run in loaded:
        if not run.problems:  # an empty table must not pass for a result
            bad += 1
            echo_err(f"or-score report: {run.source} holds no scorable record")
        else:
            kept.append(run)
    if not kept:  # nothing to show: no table, no plot
        sys.exit(EXIT_FAILED)
    summaries = [summarize(run, k, with_failures) for run in kept]
    add_deltas(kept, summaries, warn)
    emit(summaries, fmt)
    if plot_path:
        plot(summaries, plot_path)
        echo_err(f"or-score: wrote {plot_path}")
    sys.exit(EXIT_FAILED if bad else EXIT_OK)


@main.command(
    "audit",
    epilog=epilog(
        "or-score audit run.jsonl --versions ../shared/data/alt --report audit.md > suspects.jsonl",
        "or-score audit ../shared/data/*.jsonl --versions ../shared/data/alt -q | jq -r .id",
    ),
)
@click.argument("runs", nargs=-1, required=True, type=click.Path(allow_dash=True, dir_okay=False))
@click.option(
    "--versions",
    multiple=True,
    type=click.Path(exists=True),
    help="Other versions of the benchmarks (a .jsonl file or a folder of them): a question"
    " found there with another answer is a suspect.",
)
@protocol_option
@click.option(
    "--min-agree",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Fewest samples agreeing on an answer that differs from the reference.",
)
@click.option(
    "--text-key",
    metavar="KEY",
    help="Where the question is (default: 'question', then the last user message of 'messages').",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False),
    help="Also write the markdown report here.",
)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Suspects here, not stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
def audit_cmd(
    runs: tuple[str, ...],
    versions: tuple[str, ...],
    protocol: str,
    min_agree: int,
    text_key: str | None,
    report_path: str | None,
    output: str | None,
    quiet: bool,
) -> None:
    """Find reference answers that look wrong; write each suspect, with its evidence, as JSONL.

    RUN files are scored or unscored trajectories (or plain problem files: then only the
    version and duplicate checks apply). Checks: majority_disagrees (most samples agree on one
    answer that differs from the reference, and their code ran ok), version_conflict (the same
    question in a --versions file has another answer), duplicate_question (the same question
    under several ids with different answers). Questions match when equal after normalisation.
    """
    from or_common.jsonl import BadLine, Writer, open_output, read_lines
    from or_common.records import RecordError

    from .audit import (
        CHECKS,
        Audit,
        duplicate_suspects,
        majority_suspects,
        markdown,
        version_index,
        version_suspects,
    )

    for path in (output, report_path):
        check_output_path(path, runs + versions, "-o" if path == output else "--report")
    index = version_index(versions, text_key) if versions else None
    audit = Audit(protocol, text_key)
    complaints = Complaints()
    for item in read_lines(runs):
        if isinstance(item, BadLine):
            complaints.bad_line(item)
            continue
        try:
            audit.add(item.record, item.where())
        except RecordError as err:
            complaints.bad_line(BadLine(item.source, item.lineno, str(err)))
    complaints.close()
    audit.finish()
    if not audit.problems:
        echo_err(f"or-score audit: {', '.join(runs)} holds no usable record")
        sys.exit(EXIT_FAILED)
    suspects = majority_suspects(audit, min_agree)
    suspects += version_suspects(audit, index) if index is not None else []
    suspects += duplicate_suspects(audit)
    writer = Writer(open_output(output, append=False) if output else sys.stdout.buffer)
    try:
        for suspect in suspects:
            writer.write(suspect)
        writer.stream.flush()
    except BrokenPipeError:
        from or_common.cli import silence_stdout

        silence_stdout()
    if report_path:
        with open(report_path, "w") as f:
            f.write(markdown(audit, suspects, list(runs)) + "\n")
    if not quiet:
        counts = ", ".join(
            f"{check} {sum(1 for s in suspects if s['check'] == check)}" for check in CHECKS
        )
        echo_err(
            f"or-score audit: {len(audit.problems)} problems, {len(suspects)} suspects ({counts})"
        )
        if audit.no_text:
            echo_err(
                f"or-score audit: {audit.no_text} problems have no question text: the version"
                " and duplicate checks could not look at them"
            )
    sys.exit(EXIT_FAILED if complaints.total else EXIT_OK)
