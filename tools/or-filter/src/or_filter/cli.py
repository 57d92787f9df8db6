"""or-filter: composable record selection with a funnel."""

from __future__ import annotations

import sys
from typing import Any

import click
from or_common.cli import (
    ToolRun,
    check_distinct_outputs,
    check_output_path,
    echo_err,
    epilog,
    io_options,
)
from or_common.jsonl import Writer, open_output, write_json
from or_common.records import TOOL_VERSION, flow_text

from .dedup import MIN_CONTAINMENT_WORDS


def _token_counter(tokenizer_name: str):
    """Tokens of a record as the trainers see them: the token layer's sequence (prompt by the
    chat template, each segment on its own, end of turn when the turn ended). A local folder is
    loaded locally, without transformers when its `tokenizer.json` suffices (counting needs no
    torch, whose import costs seconds); a name that cannot be loaded is one usage line, before
    the first record."""
    from or_common.tokens import (
        EncodeError,
        TokenizerError,
        count_tokens,
        encode_record,
        load_tokenizer,
    )

    try:
        tok = load_tokenizer(tokenizer_name, light=True)
    except TokenizerError as exc:
        raise click.UsageError(f"--tokenizer {exc}") from None

    def count(record: dict[str, Any]) -> int:
        try:
            return len(encode_record(tok, record).input_ids)
        except EncodeError:  # a chat-mode record or one without a prompt: its text, counted
            messages = record.get("messages") or []
            text = "".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
            return count_tokens(tok, text + flow_text(record.get("flow") or []))

    return count


def funnel_stats(funnel: Any) -> dict[str, Any]:
    """The funnel (in -> out per stage, by benchmark) as a JSON object (`--stats FILE`)."""
    return {
        "tool": "or-filter",
        "tool_version": TOOL_VERSION,
        "stages": [
            {
                "stage": stage,
                "in": sum(c["in"].values()),
                "out": sum(c["out"].values()),
                "by_benchmark": {
                    b: {"in": c["in"][b], "out": c["out"][b]} for b in sorted(c["in"])
                },
            }
            for stage, c in funnel.counts.items()
        ],
    }


def funnel_from_stats(stats: dict[str, Any]) -> Any:
    """The funnel back from its `--stats` JSON (its `lines()` are what or-filter said on stderr)."""
    from collections import Counter

    from .predicates import Funnel

    stages = stats["stages"]
    funnel = Funnel([s["stage"] for s in stages[1:]])
    for s in stages:
        counts = funnel.counts[s["stage"]]
        for bench, n in s["by_benchmark"].items():
            counts["in"][bench] = n["in"]
            counts["out"][bench] = n["out"]
        counts["in"] = +Counter(counts["in"])  # a stage no record reached has no entries
        counts["out"] = +Counter(counts["out"])
    return funnel


@click.command(
    epilog=epilog(
        "or-intervene ... | or-filter --golden --max-tokens 22000 --tokenizer Qwen/Qwen3-4B-Thinking-2507 > calm.jsonl",
        "or-filter data/*.jsonl --benchmark nl4opt --has-answer --sample 30 --seed 0 > test.jsonl",
        "or-filter data/*.jsonl --exclude test.jsonl --decontaminate test.jsonl --rejects dropped.jsonl > pool.jsonl",
        "or-filter run.jsonl --one-per-problem --correct > sft.jsonl",
    )
)
@click.option(
    "--correct",
    is_flag=True,
    help="Keep records whose final answer is correct (score.correct, else strict scoring).",
)
@click.option("--golden", is_flag=True, help="Correct and flawless (calm.flawless).")
@click.option(
    "--max-tokens",
    type=click.IntRange(min=1),
    help="Keep records whose prompt + flow fit in N tokens (needs --tokenizer).",
)
@click.option("--tokenizer", help="Tokenizer for --max-tokens (local directory or hub name).")
@click.option(
    "--benchmark",
    multiple=True,
    metavar="NAME",
    help="Keep these benchmarks (repeatable; case and -/_ ignored).",
)
@click.option("--has-answer", is_flag=True, help="Keep records with a known reference answer.")
@click.option(
    "--exclude",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Drop ids present in FILE.",
)
@click.option(
    "--decontaminate",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Drop questions that near-duplicate one in FILE.",
)
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Jaccard of word 3-grams for --decontaminate.",
)
@click.option(
    "--containment-min-words",
    type=click.IntRange(min=1),
    default=MIN_CONTAINMENT_WORDS,
    show_default=True,
    help="--decontaminate also drops a question contained in another (or holding it) when the"
    " shorter has at least N words; a shorter one is judged by Jaccard alone.",
)
@click.option(
    "--text-key",
    metavar="KEY",
    help="Where the problem text is, in the inputs and in each --decontaminate file"
    " (a string, or chat messages: their last user turn). Default: 'question', then the last"
    " user message of 'messages'. A record without it is an error.",
)
@click.option(
    "--one-per-problem", is_flag=True, help="Keep the shortest correct record of each problem."
)
@click.option(
    "--sample",
    "sample_n",
    type=click.IntRange(min=0),
    help="Keep N records (chosen by a seeded hash, deterministic).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--per-benchmark", is_flag=True, help="With --sample: N per benchmark.")
@click.option(
    "--rejects",
    type=click.Path(dir_okay=False),
    help="Write rejected records here, with filter: {stage, reason}.",
)
@click.option(
    "--stats",
    type=click.Path(dir_okay=False),
    help="Write the funnel's counts here as JSON (for reports; the funnel on stderr stays).",
)
@io_options
def main(io, rejects: str | None, stats: str | None, **opts: Any) -> None:
    """Select records; every rejected record is counted in the funnel on stderr.

    Stages apply in this order: exclude, benchmark, has-answer, decontaminate, correct, golden,
    max-tokens, then one-per-problem and sample (which see every record that got that far).
    """
    from .predicates import (
        Funnel,
        buffered_stages,
        run_buffered,
        run_stages,
        streaming_stages,
        unmatched_benchmarks,
    )

    if opts["max_tokens"] is not None and not opts["tokenizer"]:
        raise click.UsageError("--max-tokens needs --tokenizer")
    if opts["per_benchmark"] and opts["sample_n"] is None:
        raise click.UsageError("--per-benchmark goes with --sample N")
    check_output_path(rejects, io.inputs, "--rejects")
    check_output_path(stats, io.inputs, "--stats")
    check_distinct_outputs(("-o", io.output), ("--rejects", rejects), ("--stats", stats))
    counter = _token_counter(opts["tokenizer"]) if opts["max_tokens"] is not None else None
    stages = streaming_stages(opts, counter)
    buffered = buffered_stages(opts)
    funnel = Funnel([name for name, _ in stages] + buffered)
    reject_writer = Writer(open_output(rejects, append=False)) if rejects else None

    def reject(record: dict[str, Any], stage: str, reason: str) -> None:
        if reject_writer is not None:
            reject_writer.write(
                {
                    **record,
                    "filter": {"stage": stage, "reason": reason, "tool_version": TOOL_VERSION},
                }
            )

    with ToolRun("or-filter", io) as run:
        passed = run_stages(run.records(), stages, funnel, reject, run.bad_record)
        for _, record in (
            run_buffered(passed, buffered, opts, funnel, reject) if buffered else passed
        ):
            run.write(record)
    if reject_writer is not None:
        reject_writer.stream.close()
    if stats:
        write_json(stats, funnel_stats(funnel))
    if not io.quiet:
        for line in funnel.lines():
            echo_err(line)
    for name in unmatched_benchmarks(opts["benchmark"], funnel):
        echo_err(
            f"or-filter: no record has benchmark {name!r}; "
            f"the input has: {', '.join(funnel.benchmarks()) or 'no records'}"
        )
    sys.exit(run.exit_code)
