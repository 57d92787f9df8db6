"""The Reasoner side of a run (engine + sandbox + tokenizer), shared by or-gen and or-intervene.

`ReasonerSession.check()` runs before the first record: everything that would make the whole run
impossible (a malformed option, a tokenizer that cannot be loaded, a missing extra) is reported
there in one line with exit 2. `ReasonerSession.get()` builds the heavy parts (the engine, the
sandbox pool) once, on the first record that needs them. (`--backend` picks the engine; this is
everything around it.)
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
from typing import Any

import click
from or_common.reasoner import ReasonerOptions

from .engine import Sampling

log = logging.getLogger("or_gen")

#: Request fields or-gen sets itself: `--sampling-extra` may add fields, never replace these.
OWNED_REQUEST_FIELDS = frozenset(
    {
        "model",
        "prompt",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "stop",
        "seed",
        "n",
        "temperature",
        "top_p",
        "stream",
        "include_stop_str_in_output",
        "skip_special_tokens",
        "return_token_ids",
        "logprobs",
    }
)


class RunImpossible(click.ClickException):
    """A run that cannot work at all, known before the first record: one line, exit 2."""

    exit_code = 2


class ReasonerSession:
    """Lazily built engine + sandbox; the tokenizer and the options are checked up front."""

    def __init__(self, opts: ReasonerOptions, cache_path: str | None):
        self.opts = opts
        self.cache_path = cache_path
        self.generator: Any = None
        self.pool: Any = None
        self.tokenizer: Any = None
        self.extra: dict[str, Any] = {}
        self.template = ""
        self.prompt_version = ""
        self._checked = False
        self._lock: asyncio.Lock | None = None
        self.done: set = set()  # keys already in the output (their cached requests are not loaded)

    def check(self) -> None:
        """Validate the options and load the tokenizer; raise RunImpossible on the first
        problem. Cheap checks first, so a bad flag costs no tokenizer load."""
        from or_common.reasoner import load_prompt
        from or_common.tokens import TokenizerError, load_tokenizer

        o = self.opts
        if o.sampling_extra:
            try:
                extra = json.loads(o.sampling_extra)
            except ValueError as exc:
                raise RunImpossible(f"--sampling-extra is not valid JSON ({exc})") from None
            if not isinstance(extra, dict):
                raise RunImpossible(
                    "--sampling-extra must be a JSON object, e.g. '{\"top_k\": 20}'"
                )
            owned = sorted(set(extra) & OWNED_REQUEST_FIELDS)
            if owned:
                raise RunImpossible(
                    f"--sampling-extra cannot set {', '.join(owned)}: or-gen sets them (the "
                    "protocol's stops and budget; --temperature, --top-p, --seed, --max-tokens)"
                )
            self.extra = extra
        try:
            self.template, self.prompt_version = load_prompt(o.prompt_file)
        except (OSError, ValueError) as exc:
            raise RunImpossible(str(exc)) from None
        backend = o.backend
        if o.chat and backend != "openai":
            raise RunImpossible("--chat is only for the openai backend")
        if backend == "openai":
            from or_common.llm import is_provider_model

            if not o.api_bases and not is_provider_model(o.model):
                raise RunImpossible(
                    f"--model {o.model}: give --api-base URL (a served model) or a "
                    "provider/name model (e.g. deepseek/deepseek-reasoner)"
                )
        if backend == "vllm" and importlib.util.find_spec("vllm") is None:
            raise RunImpossible(
                "--backend vllm needs vLLM, which is not installed: on a GPU node run "
                "`uv sync --extra gpu`, or serve the model with `vllm serve` "
                "and use --api-base"
            )
        if backend == "transformers" and importlib.util.find_spec("torch") is None:
            raise RunImpossible(
                "--backend transformers needs torch, which is not installed: "
                "`uv run just test-deps` (CPU) or install torch for your GPU"
            )
        if backend in ("vllm", "transformers"):
            from or_common.tokens import check_model

            try:
                check_model(o.model)
            except TokenizerError as exc:
                raise RunImpossible(f"--model {exc}") from None
        if o.chat and not o.tokenizer:
            self.tokenizer = None  # a chat API renders its own template
        else:
            try:
                # the openai backend only encodes, decodes and counts: no transformers import
                self.tokenizer = load_tokenizer(o.tokenizer_name, light=backend == "openai")
            except TokenizerError as exc:
                hint = "" if o.tokenizer else " (pass --tokenizer DIR)"
                raise RunImpossible(f"tokenizer: {exc}{hint}") from None
        self._checked = True

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

        from .cache import RequestCache
        from .loop import GenConfig, Generator

        if not self._checked:
            self.check()
        o = self.opts
        limits = Limits(timeout=o.exec_timeout, memory_mb=o.exec_memory)
        config = GenConfig(
            model=o.model,
            backend=o.backend,
            sampling=Sampling(o.temperature, o.top_p, self.extra),
            max_tokens=o.max_tokens,
            max_executions=o.max_executions,
            seed=o.seed,
            template=self.template,
            prompt_version=self.prompt_version,
            limits=limits,
            chat=o.chat,
            tokenizer_name=o.tokenizer_name if self.tokenizer is not None else None,
        )
        engine = self.make_engine()
        self.pool = self.make_runner(limits)
        # the sandbox warms up (pulp, numpy, scipy: seconds) while the first requests are out
        runner = StartingRunner(self.pool, asyncio.create_task(self.pool.start(["pulp"])))
        cache = RequestCache(self.cache_path, skip=self.done) if self.cache_path else None
        return Generator(engine, runner, self.tokenizer, config, cache)

    def make_runner(self, limits: Any) -> Any:
        """The sandbox: a local or-exec pool, or a shared `or-exec serve` one."""
        from or_exec.pool import Pool
        from or_exec.server import RemotePool

        o = self.opts
        if o.sandbox_url:
            return RemotePool(o.sandbox_url, limits)
        return Pool(workers=o.workers, limits=limits)

    def make_engine(self) -> Any:
        o = self.opts
        if o.backend == "openai":
            from .openai_engine import OpenAIEngine

            return OpenAIEngine(
                o.model,
                o.api_bases,
                api_key=o.api_key,
                chat=o.chat,
                retries=o.retries,
                backoff=o.retry_backoff,
                request_timeout=o.request_timeout,
            )
        if o.backend == "vllm":
            from .local_engines import VLLMEngine

            return VLLMEngine(
                o.model,
                self.tokenizer,
                tokenizer_path=o.tokenizer,
                tensor_parallel_size=o.tensor_parallel_size,
                max_model_len=o.max_model_len,
                seed=o.seed,
            )
        from .local_engines import TransformersEngine

        return TransformersEngine(o.model, self.tokenizer)

    async def close(self) -> None:
        if self.generator is not None:
            await self.generator.engine.close()
            if self.generator.cache is not None:
                self.generator.cache.close()
            await self.generator.runner.started(cancel=True)
        if self.pool is not None:
            await self.pool.close()


class StartingRunner:
    """A sandbox pool whose start is still under way: the first execution waits for it (and
    raises what the start raised)."""

    def __init__(self, pool: Any, starting: asyncio.Task):
        self.pool = pool
        self.starting = starting

    async def started(self, cancel: bool = False) -> None:
        """Wait for the start; with `cancel` (closing), stop it instead, and only log a start
        that failed (no execution needed it, or its failure is in those records already)."""
        if not cancel:
            await self.starting
            return
        if not self.starting.done():
            self.starting.cancel()
        try:
            await self.starting
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log.warning("the sandbox pool did not start: %s", exc)

    async def run(self, code: str, limits: Any = None, prelude: Any = ()) -> Any:
        await self.starting
        return await self.pool.run(code, limits)
