"""or-gen: problems in, reflective trajectories out."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from typing import Any

import click
from or_common.cli import ToolRun, epilog, io_options, run_concurrently, threaded_aiter
from or_common.records import RecordError, check_problem, record_key

log = logging.getLogger("or_gen")


def reasoner_options(func):
    """The Reasoner flags, shared with or-intervene (which resumes generation the same way)."""
    options = [
        click.option(
            "--model",
            required=True,
            help="Served model name (openai), or a model path / hub name (vllm, transformers).",
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
            help="Where the chat template comes from: a local directory or hub name (default: --model).",
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
            "--cache",
            "cache_path",
            type=click.Path(dir_okay=False),
            help="Request cache (default with -o: FILE.cache).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class Backend:
    """Lazily built engine + sandbox + tokenizer: nothing heavy is imported until there is work."""

    def __init__(self, opts: dict[str, Any], cache_path: str | None):
        self.opts = opts
        self.cache_path = cache_path
        self.generator: Any = None
        self.pool: Any = None
        self._lock: asyncio.Lock | None = None
        self.done: set = set()  # keys already in the output (their cached requests are not loaded)

    async def get(self) -> Any:
        """The generator, built once: concurrent first callers wait for the same build."""
        if self.generator is not None:
            return self.generator
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self.generator is None:
                self.generator = await self._build()
        return self.generator

    async def _build(self) -> Any:
        from or_exec.limits import Limits
        from or_exec.pool import Pool
        from or_exec.server import RemotePool

        from .cache import RequestCache
        from .engine import Sampling
        from .loop import GenConfig, Generator
        from .prompt import load_prompt, load_tokenizer

        o = self.opts
        template, version = load_prompt(o["prompt_file"])
        extra = json.loads(o["sampling_extra"]) if o["sampling_extra"] else {}
        limits = Limits(timeout=o["exec_timeout"], memory_mb=o["exec_memory"])
        tok_name = o["tokenizer"] or o["model"]
        tokenizer = None if (o["chat"] and not o["tokenizer"]) else load_tokenizer(tok_name)
        config = GenConfig(
            model=o["model"],
            backend=o["backend"],
            sampling=Sampling(o["temperature"], o["top_p"], extra),
            max_tokens=o["max_tokens"],
            max_executions=o["max_executions"],
            seed=o["seed"],
            template=template,
            prompt_version=version,
            limits=limits,
            chat=o["chat"],
            tokenizer_name=tok_name if tokenizer is not None else None,
        )
        self.pool = (
            RemotePool(o["sandbox_url"], limits)
            if o["sandbox_url"]
            else Pool(workers=o["workers"], limits=limits)
        )
        await self.pool.start(["pulp"])
        engine = self.make_engine(tokenizer)
        cache = RequestCache(self.cache_path, skip=self.done) if self.cache_path else None
        return Generator(engine, self.pool, tokenizer, config, cache)

    def make_engine(self, tokenizer: Any) -> Any:
        o = self.opts
        if o["backend"] == "openai":
            from .openai_engine import OpenAIEngine

            return OpenAIEngine(
                o["model"],
                o["api_bases"],
                api_key=o["api_key"],
                chat=o["chat"],
                retries=o["retries"],
                backoff=o["retry_backoff"],
                request_timeout=o["request_timeout"],
            )
        if o["chat"]:
            raise click.UsageError("--chat is only for the openai backend")
        if o["backend"] == "vllm":
            from .local_engines import VLLMEngine

            return VLLMEngine(
                o["model"],
                tokenizer=o["tokenizer"],
                tensor_parallel_size=o["tensor_parallel_size"],
                seed=o["seed"],
            )
        from .local_engines import TransformersEngine

        return TransformersEngine(o["model"], tokenizer)

    async def close(self) -> None:
        if self.generator is not None:
            await self.generator.engine.close()
            if self.generator.cache is not None:
                self.generator.cache.close()
        if self.pool is not None:
            await self.pool.close()


@click.command(
    epilog=epilog(
        "vllm serve Qwen/Qwen3-4B-Thinking-2507 --port 8000 &",
        "or-gen --model Qwen/Qwen3-4B-Thinking-2507 --api-base http://127.0.0.1:8000/v1 --n 8 < test.jsonl > run.jsonl",
        "or-gen --backend vllm --model ckpt/storm -o run.jsonl --resume < test.jsonl",
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

    async def go(run: ToolRun) -> None:
        backend.done = run.done
        t0 = time.monotonic()
        finished = 0

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
            nonlocal finished
            problem, sample = item
            generator = await backend.get()
            try:
                record = await generator.trajectory(problem, sample)
            except Exception as exc:  # a bug or an engine crash still yields a record
                log.exception("trajectory %s/%s failed", problem.get("id"), sample)
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
            finished += 1
            elapsed = max(time.monotonic() - t0, 1e-6)
            run.status(
                f"· {finished} trajectories · {generator.tokens / elapsed:,.0f} tok/s · {generator.executions / elapsed:,.1f} exec/s"
            )

        try:
            await run_concurrently(work(), opts["concurrency"], one)
        finally:
            await backend.close()

    with ToolRun("or-gen", io, is_done=is_done, unit="problems") as run:
        asyncio.run(go(run))
    sys.exit(run.exit_code)
