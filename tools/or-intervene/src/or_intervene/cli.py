"""or-intervene: CALM, the Reasoner-Intervener loop."""

from __future__ import annotations

import sys
from typing import Any

import click
from or_common.cli import (
    ToolRun,
    amap_records,
    check_distinct_outputs,
    check_output_path,
    echo_err,
    epilog,
    io_options,
)
from or_common.llm import close_clients
from or_common.providers import check_api_key
from or_common.reasoner import ReasonerOptions, reasoner_options
from or_gen.session import ReasonerSession

from .defaults import INTERVENER_DEFAULTS


def intervener_model(spec: str, opts: dict[str, Any]) -> str | None:
    """The model behind `--intervener` (None for `rules`); checked before the first record:
    a hybrid without a model, or a hosted model without its API key, is a usage error."""
    if spec == "rules":
        return None
    hybrid = spec.startswith("hybrid")
    model_name = (
        spec.split(":", 1)[1]
        if hybrid and ":" in spec
        else opts["intervener_model"]
        if hybrid
        else spec
    )
    if not model_name:
        raise click.UsageError(
            "hybrid needs a model: --intervener hybrid:MODEL (or --intervener-model MODEL)"
        )
    check_api_key(model_name, opts["intervener_api_base"], opts["intervener_api_key"])
    return model_name


def make_intervener(spec: str, opts: dict[str, Any], reasoner: ReasonerOptions) -> Any:
    from .interveners import HybridIntervener, ModelIntervener, RulesIntervener

    model_name = intervener_model(spec, opts)
    if model_name is None:
        return RulesIntervener()
    hybrid = spec.startswith("hybrid")
    model = ModelIntervener(
        model_name,
        opts["intervener_api_base"],
        opts["intervener_api_key"],
        temperature=opts["intervener_temperature"],
        top_p=opts["intervener_top_p"],
        retries=reasoner.retries,
        backoff=reasoner.retry_backoff,
        reask=opts["reask"],
        timeout=reasoner.request_timeout,
    )
    return HybridIntervener(model) if hybrid else model


@click.command(
    epilog=epilog(
        "or-gen --model M --api-base http://127.0.0.1:8000/v1 < sft.jsonl | or-intervene --intervener gemini/gemini-2.5-pro --model M --api-base http://127.0.0.1:8000/v1 > calm.jsonl",
        "or-intervene run.jsonl --intervener rules --backend transformers --model ./tiny -o calm.jsonl --resume",
        "or-intervene run.jsonl --intervener hybrid:openai/judge --intervener-api-base http://127.0.0.1:9000/v1 --model M --api-base URL | or-filter --golden",
    )
)
@click.option(
    "--intervener",
    "intervener_spec",
    required=True,
    metavar="MODEL|rules|hybrid[:MODEL]",
    help="A hosted model through litellm (e.g. gemini/gemini-2.5-pro), a served one as openai/NAME with --intervener-api-base (openai SDK), rules, or hybrid.",
)
@click.option("--intervener-model", help="The model behind `hybrid` (or use hybrid:MODEL).")
@click.option("--intervener-api-base", metavar="URL")
@click.option("--intervener-api-key", envvar="INTERVENER_API_KEY")
@click.option(
    "--intervener-temperature",
    type=float,
    default=INTERVENER_DEFAULTS.temperature,
    show_default=True,
)
@click.option(
    "--intervener-top-p", type=float, default=INTERVENER_DEFAULTS.top_p, show_default=True
)
@click.option(
    "--max-interventions",
    type=click.IntRange(min=0),
    default=INTERVENER_DEFAULTS.max_interventions,
    show_default=True,
)
@click.option(
    "--reask",
    type=click.IntRange(min=0),
    default=INTERVENER_DEFAULTS.reask,
    show_default=True,
    help="Re-asks for a malformed answer or a target not found.",
)
@click.option(
    "--stats",
    type=click.Path(dir_okay=False),
    help="Write the funnel's counts here as JSON (for reports; the funnel on stderr stays).",
)
@reasoner_options
@io_options
def main(
    io,
    intervener_spec: str,
    max_interventions: int,
    stats: str | None,
    reasoner: ReasonerOptions,
    **opts: Any,
) -> None:
    """Correct trajectories with hints at their first flaw (CALM).

    For each trajectory the Intervener names the first flaw (one of the seven triggers), the
    exact text where it begins and a short first-person hint. The flow is cut there, the hint is
    appended as an `intervener` segment, and the Reasoner (same flags as or-gen) resumes from that
    exact prefix. This repeats until the Intervener finds nothing or --max-interventions hints were
    given; the Intervener then reviews once more. Writes `calm: {rounds, verdict, flawless,
    initial, final, hint_tokens}` and replaces `flow`; prints the funnel on stderr (and with
    --stats FILE, writes it there as JSON).
    """
    from .calm import CalmFunnel, calm_record

    intervener_model(intervener_spec, opts)  # a missing key fails now, not 5 retries per record
    check_output_path(stats, io.inputs, "--stats")
    check_distinct_outputs(("-o", io.output), ("--stats", stats))
    session = ReasonerSession(reasoner, reasoner.cache_for(io.output))
    session.check()  # a run that cannot work stops here: one line, exit 2
    funnel = CalmFunnel()
    heavy: dict[str, Any] = {}

    async def build() -> None:
        """The Intervener and the token counter, once the first record with work arrives."""
        heavy["intervener"] = make_intervener(intervener_spec, opts, reasoner)
        heavy["count"] = _token_counter(session.tokenizer)

    async def correct(record: dict[str, Any]) -> dict[str, Any]:
        record = await calm_record(
            record, heavy["intervener"], session.get, heavy["count"], max_interventions
        )
        funnel.add(record)
        return record

    async def close() -> None:
        await session.close()
        await close_clients()

    with ToolRun("or-intervene", io) as run:
        session.done = run.done
        if io.output and io.resume:  # the funnel of the whole output, not of this run alone
            funnel.add_output(io.output)
        amap_records(run, correct, concurrency=reasoner.concurrency, first=build, close=close)
    if stats:
        funnel.write(stats)
    if funnel.records and not io.quiet:
        for line in funnel.lines():
            echo_err(line)
    sys.exit(run.exit_code)


def _token_counter(tokenizer: Any):
    """Token counts for the funnel, from the token layer with the Reasoner's tokenizer (a chat
    run without --tokenizer counts 4 characters per token)."""
    from or_common.tokens import count_tokens

    if tokenizer is None:
        return lambda text: max(1, len(text) // 4) if text else 0
    return lambda text: count_tokens(tokenizer, text)
