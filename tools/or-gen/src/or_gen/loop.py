"""The Reasoner's loop: generate, pause at a closing fence, execute, insert the output, resume
from the exact prefix, until the turn ends or the budget is spent. or-intervene reuses
`Generator.continue_flow` to resume a cut trajectory after a hint."""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from or_common.blocks import awaits_execution, flow_blocks
from or_common.records import TOOL_VERSION, flow_text
from or_exec.limits import ExecResult, Limits
from or_exec.records import executor_segment

from .cache import RequestCache
from .engine import Completion, Engine, Sampling
from .openai_engine import GenerationError
from .prompt import build_messages, render_prompt

SKIPPED_MESSAGE = "Code execution is no longer available: the limit of {n} executions is reached. Continue without running code."


@dataclass
class GenConfig:
    model: str
    backend: str
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = 16384
    max_executions: int = 4
    seed: int = 1234
    template: str = ""
    prompt_version: str = ""
    limits: Limits = field(default_factory=Limits)
    chat: bool = False
    tokenizer_name: str | None = None


@dataclass
class LoopState:
    flow: list[dict[str, Any]]
    executions: int = 0
    used_tokens: int = 0  # everything after the prompt: model tokens and inserted output tokens
    completion_tokens: int = 0
    executor_tokens: int = 0
    prompt_tokens: int | None = None
    rounds: int = 0
    exec_seconds: float = 0.0
    finish: str = "stop"
    error: GenerationError | None = None


def request_seed(seed: int, key: tuple[str, int], round_: int) -> int:
    """A per-request seed derived from the run seed, the trajectory and the round."""
    return zlib.crc32(f"{seed}:{key[0]}:{key[1]}:{round_}".encode()) & 0x7FFFFFFF


def append_text(flow: list[dict[str, Any]], text: str, role: str = "reasoner") -> None:
    """Extend the last segment if it has the same role, else start a new one."""
    if not text:
        return
    if flow and flow[-1].get("role") == role == "reasoner":
        flow[-1]["text"] += text
    else:
        flow.append({"role": role, "text": text})


def chat_messages(
    messages: list[dict[str, str]], flow: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Chat mode: the flow as alternating assistant turns and user turns holding the outputs."""
    out = list(messages)
    for seg in flow:
        role = "user" if seg["role"] == "executor" else "assistant"
        if out[-1]["role"] == role:
            out[-1] = {"role": role, "content": out[-1]["content"] + seg["text"]}
        else:
            out.append({"role": role, "content": seg["text"]})
    return out


class Generator:
    """Runs trajectories against one engine and one sandbox."""

    def __init__(
        self,
        engine: Engine,
        runner: Any,
        tokenizer: Any,
        config: GenConfig,
        cache: RequestCache | None = None,
    ):
        self.engine = engine
        self.runner = runner
        self.tokenizer = tokenizer
        self.config = config
        self.cache = cache
        self.tokens = 0
        self.executions = 0
        self.requests = 0

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:
            return max(1, len(text) // 4)
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_for(self, record: dict[str, Any]) -> tuple[list[dict[str, str]], str | None]:
        """The record's chat messages and the rendered prompt (None in chat mode)."""
        messages = record.get("messages") or build_messages(
            record["question"], self.config.template, self.config.max_executions
        )
        return messages, (None if self.config.chat else render_prompt(self.tokenizer, messages))

    async def _request(
        self,
        key: tuple[str, int],
        request: Any,
        max_tokens: int,
        seed: int,
        route: int,
        context: str,
    ) -> Completion:
        cfg = self.config
        digest = hashlib.sha256(
            repr(
                (
                    cfg.model,
                    request,
                    max_tokens,
                    cfg.sampling.temperature,
                    cfg.sampling.top_p,
                    sorted(cfg.sampling.extra.items()),
                    seed,
                )
            ).encode()
        ).hexdigest()
        if self.cache is not None:
            hit = self.cache.get(key, digest)
            if hit is not None:
                return hit
        completion = await self.engine.complete(
            request,
            max_tokens=max_tokens,
            sampling=cfg.sampling,
            seed=seed,
            route=route,
            context=context,
        )
        self.requests += 1
        if self.cache is not None:
            self.cache.put(key, digest, completion)
        return completion

    async def execute(self, code: str) -> ExecResult:
        self.executions += 1
        return await self.runner.run(code, self.config.limits)

    async def continue_flow(
        self,
        key: tuple[str, int],
        messages: list[dict[str, str]],
        prompt: str | None,
        state: LoopState,
    ) -> LoopState:
        """Generate from `prompt + flow` until the turn ends; returns the updated state."""
        cfg = self.config
        route = zlib.crc32(f"{key[0]}:{key[1]}".encode())
        max_rounds = 4 * cfg.max_executions + 32  # a model that only ever writes fences still ends
        fake_outputs = 0
        while True:
            remaining = cfg.max_tokens - state.used_tokens
            if remaining <= 0:
                state.finish = "length"
                return state
            if state.rounds >= max_rounds:
                state.finish = "rounds"
                return state
            so_far = flow_text(state.flow)
            request: Any = (
                chat_messages(messages, state.flow) if prompt is None else prompt + so_far
            )
            try:
                comp = await self._request(
                    key,
                    request,
                    remaining,
                    request_seed(cfg.seed, key, state.rounds),
                    route,
                    so_far,
                )
            except GenerationError as err:
                state.error = err
                state.finish = "error"
                return state
            state.rounds += 1
            if state.prompt_tokens is None:
                state.prompt_tokens = comp.prompt_tokens
            state.completion_tokens += comp.completion_tokens
            state.used_tokens += comp.completion_tokens
            self.tokens += comp.completion_tokens
            append_text(state.flow, comp.text)
            if comp.finish == "fence":
                if awaits_execution(state.flow):
                    await self._run_last_block(state)
                continue
            if comp.finish == "fake_output":
                fake_outputs += 1
                if fake_outputs > 2:
                    state.finish = "fake_output"
                    return state
                continue
            state.finish = comp.finish
            return state

    async def _run_last_block(self, state: LoopState) -> None:
        cfg = self.config
        if state.executions < cfg.max_executions:
            t = time.perf_counter()
            result = await self.execute(flow_blocks(state.flow)[-1].code)
            state.exec_seconds += time.perf_counter() - t
            state.executions += 1
        else:
            result = ExecResult(
                "skipped", None, "", "", 0.0, message=SKIPPED_MESSAGE.format(n=cfg.max_executions)
            )
        segment = executor_segment(result)
        state.flow.append(segment)
        n = self.count_tokens(segment["text"])
        state.executor_tokens += n
        state.used_tokens += n

    async def trajectory(self, problem: dict[str, Any], sample: int) -> dict[str, Any]:
        """One new trajectory for `problem`: the problem's keys plus sample, messages, flow, gen."""
        t = time.perf_counter()
        record = dict(problem)
        record["sample"] = sample
        messages, prompt = self.prompt_for(record)
        record["messages"] = messages
        key = (str(record["id"]), sample)
        state = await self.continue_flow(key, messages, prompt, LoopState(flow=[]))
        record["flow"] = state.flow
        record["gen"] = self.stamp(state, time.perf_counter() - t)
        return record

    def stamp(self, state: LoopState, seconds: float) -> dict[str, Any]:
        cfg = self.config
        gen: dict[str, Any] = {
            "model": cfg.model,
            "backend": cfg.backend,
            "temperature": cfg.sampling.temperature,
            "top_p": cfg.sampling.top_p,
            "seed": cfg.seed,
            "max_tokens": cfg.max_tokens,
            "max_executions": cfg.max_executions,
            "finish": state.finish,
            "executions": state.executions,
            "rounds": state.rounds,
            "prompt_tokens": state.prompt_tokens,
            "completion_tokens": state.completion_tokens,
            "executor_tokens": state.executor_tokens,
            "seconds": round(seconds, 3),
            "exec_seconds": round(state.exec_seconds, 3),
            "prompt_version": cfg.prompt_version,
            "tool_version": TOOL_VERSION,
            "mode": "chat" if cfg.chat else "completion",
        }
        if cfg.tokenizer_name:
            gen["tokenizer"] = cfg.tokenizer_name
        if cfg.sampling.extra:
            gen["sampling_extra"] = cfg.sampling.extra
        if state.error is not None:
            gen["error"] = {
                "tool": "or-gen",
                "type": state.error.type,
                "message": state.error.message,
            }
        return gen
