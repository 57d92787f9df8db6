"""or-gen: problems in, reflective trajectories out."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import click
from or_common.cli import ToolRun, epilog, io_options
from or_common.concurrency import run_concurrently, threaded_aiter
from or_common.records import RecordError, check_problem, record_key

from .backend import Backend
from .engine import EngineDied

log = logging.getLogger("or_gen")


def reasoner_options(func):
    """The Reasoner flags, shared with or-intervene (which resumes generation the same way)."""
    options = [
        click.option(
            "--model",
            required=True,
            help="Served model name (openai, with --api-base), a provider/name model "
            "(gemini/…, deepseek/…: through litellm), or a model path / hub name (vllm, "
            "transformers).",
        ),
        click.option(
            "--backend",
            type=click.Choice(["openai", "vllm", "transformers"]),
            default="openai",
            show_default=True,
        ),
        click.option(
            "--api-base",
            "api_bases",
            multiple=True,
            metavar="URL",
            help="OpenAI-compatible server (repeat to load-balance).",
        ),
        click.option(
            "--api-key",
            envvar="OPENAI_API_KEY",
            help="API key (default: $OPENAI_API_KEY, else none).",
        ),
        click.option(
            "--tokenizer",
            help="The model's tokenizer (chat template and token ids): a local directory or a "
            "cached hub name (default: --model).",
        ),
        click.option(
            "--chat",
            is_flag=True,
            help="Chat-only APIs: outputs go back as user turns (no byte-exact continuation).",
        ),
        click.option("--temperature", type=float, default=0.6, show_default=True),
        click.option("--top-p", type=float, default=0.95, show_default=True),
        click.option(
            "--max-tokens",
            type=click.IntRange(min=1),
            default=16384,
            show_default=True,
            help="Budget for everything after the prompt.",
        ),
        click.option("--max-executions", type=click.IntRange(min=0), default=4, show_default=True),
        click.option("--seed", type=int, default=1234, show_default=True),
        click.option(
            "--sampling-extra",
            default=None,
            metavar="JSON",
            help="Extra sampling fields passed through, e.g. '{\"top_k\": 20}'.",
        ),
        click.option(
            "--prompt",
            "prompt_file",
            type=click.Path(exists=True, dir_okay=False),
            help="Replace the Reasoner prompt ({question} placeholder).",
        ),
        click.option(
            "--concurrency",
            type=click.IntRange(min=1),
            default=64,
            show_default=True,
            help="Trajectories in flight.",
        ),
        click.option(
            "--exec-timeout",
            type=float,
            default=10.0,
            show_default=True,
            help="Seconds per code execution.",
        ),
        click.option(
            "--exec-memory",
            type=int,
            default=4096,
            show_default=True,
            help="MiB per code execution.",
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 128),
            help="Sandbox workers (default: number of cores).",
        ),
        click.option(
            "--sandbox",
            "sandbox_url",
            metavar="URL",
            help="Use an `or-exec serve` pool instead of a local one.",
        ),
        click.option("--retries", type=click.IntRange(min=0), default=5, show_default=True),
        click.option(
            "--retry-backoff",
            type=float,
            default=1.0,
            show_default=True,
            help="First retry delay in seconds (doubles).",
        ),
        click.option("--request-timeout", type=float, default=600.0, show_default=True),
        click.option(
            "--tensor-parallel-size", type=int, default=1, show_default=True, help="vllm backend."
        ),
        click.option(
            "--max-model-len",
            type=click.IntRange(min=1),
            help="vllm backend: the longest sequence to reserve memory for (default: the "
            "model's; Qwen3-2507 declares 262144, so set e.g. 20000).",
        ),
        click.option(
            "--cache",
            "cache_path",
            type=click.Path(dir_okay=False),
            help="Request cache (default with -o: FILE.cache).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command(
    epilog=epilog(
        "vllm serve Qwen/Qwen3-4B-Thinking-2507 --port 8000 &",
        "or-gen --model Qwen/Qwen3-4B-Thinking-2507 --api-base http://127.0.0.1:8000/v1 --n 8 < test.jsonl > run.jsonl",
        "or-gen --backend vllm --model ckpt/storm --max-model-len 20000 -o run.jsonl --resume < test.jsonl",
        "or-gen --model ckpt/storm --api-base http://gpu1:8000/v1 --api-base http://gpu2:8000/v1 < test.jsonl | or-score | or-score report -",
    )
)
@reasoner_options
@click.option(
    "--n",
    "n_samples",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Samples per problem.",
)
@io_options
def main(io, n_samples: int, cache_path: str | None, **opts: Any) -> None:
    """Generate trajectories in which the Reasoner runs its own code while it thinks.

    For each problem and sample: render the prompt with the model's chat template, generate,
    pause at the closing fence of each ```python block, run it in the or-exec sandbox, insert the
    ```output block, and continue the same assistant turn (at most --max-executions runs; later
    blocks get a note that execution is no longer available). Writes one trajectory per
    (problem, sample) with `flow` and `gen`. Failed requests (after retries) become records with
    `gen.error`. With -o FILE --resume, finished samples are skipped and requests already answered
    are replayed from FILE.cache.
    """
    if cache_path is None and io.output:
        cache_path = io.output + ".cache"

    def is_done(problem: dict[str, Any], done: set) -> bool:
        return all((str(problem.get("id")), s) in done for s in range(n_samples))

    backend = Backend(opts, cache_path)
    backend.check()  # a run that cannot work stops here: one line, exit 2

    async def go(run: GenRun) -> None:
        backend.done = run.done

        async def work() -> Any:
            """(problem, sample) for every sample not already in the output."""
            async for line in threaded_aiter(iter(run.records())):
                try:
                    check_problem(line.record)
                except RecordError as err:
                    run.bad_record(line, err)
                    continue
                pid = str(line.record["id"])
                for sample in range(n_samples):
                    if (pid, sample) not in run.done:
                        yield line.record, sample

        async def one(item: tuple[dict[str, Any], int]) -> None:
            problem, sample = item
            generator = await backend.get()
            try:
                record = await generator.trajectory(problem, sample)
            except EngineDied:  # no later request can succeed: the run stops, saying so
                raise
            except Exception as exc:  # a bug must not lose the trajectory: an error record, exit 1
                log.error(
                    "trajectory %s/%s failed", problem.get("id"), sample, exc_info=not run.n_failed
                )
                record = {
                    **problem,
                    "sample": sample,
                    "flow": [],
                    "gen": {
                        "finish": "error",
                        "error": {
                            "tool": "or-gen",
                            "type": type(exc).__name__,
                            "message": str(exc)[:500],
                        },
                    },
                }
            if generator.cache is not None:
                generator.cache.forget(record_key(record))  # type: ignore[arg-type]
            run.write(record)
            if "error" in record["gen"]:
                run.failed()
            run.trajectory_done(generator)

        try:
            await run_concurrently(work(), opts["concurrency"], one)
        finally:
            await backend.close()

    with GenRun("or-gen", io, is_done=is_done, unit="trajectories", per_record=n_samples) as run:
        asyncio.run(go(run))
    sys.exit(run.exit_code)


class GenRun(ToolRun):
    """or-gen reads problems and writes trajectories: progress counts trajectories as they are
    written (with tokens/s and executions/s), the summary names both units."""

    def trajectory_done(self, generator: Any) -> None:
        if self._progress is None:
            return
        elapsed = self._progress.elapsed()
        self.status(
            f"· {generator.tokens / elapsed:,.0f} tok/s · "
            f"{generator.executions / elapsed:,.1f} exec/s"
        )

    def summary(self) -> str:
        parts = [f"{self.n_in} problems in", f"{self.n_out} trajectories out"]
        if self.n_skipped:
            parts.append(f"{self.n_skipped} problems already done")
        if self.n_bad:
            parts.append(f"{self.n_bad} bad input lines")
        if self.n_failed:
            parts.append(f"{self.n_failed} trajectories failed")
        return f"{self.tool}: " + ", ".join(parts)
