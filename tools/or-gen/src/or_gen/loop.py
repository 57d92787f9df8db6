"""The Reasoner's loop, in token ids: it drives a `Turn` (or_common.turn) with an
engine and a sandbox and holds no policy of its own.

The sequence starts as the prompt's ids (token layer); each round sends it whole, appends the
generated ids verbatim (re-aligned only where the turn rules cut a completion inside a token),
and after an execution appends the output block's ids. Budgets count these ids. or-intervene
resumes a cut trajectory through `Generator.resume`, on the same path.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from or_common.llm import GenerationError
from or_common.reasoner import REASONER_DEFAULTS, build_messages
from or_common.records import ERROR_FINISHES, TOOL_VERSION, flow_text, set_error
from or_common.tokens import (
    count_tokens,
    encode,
    executor_ids,
    prompt_ids,
    render_prompt,
    stop_ids,
    take_completion,
)
from or_common.turn import (
    Execute,
    Finish,
    Generate,
    Skip,
    SkippedResult,
    Turn,
    TurnLimits,
    after_generation,
    after_output,
    model_text,
    next_request,
    output_segment,
    resumed_turn,
)
from or_exec.limits import ExecResult, Limits
from or_exec.server import SandboxUnavailable

from .cache import RequestCache
from .engine import Completion, Engine, Request, Sampling


@dataclass
class GenConfig:
    model: str
    backend: str
    sampling: Sampling = field(default_factory=Sampling)
    max_tokens: int = REASONER_DEFAULTS.max_tokens
    max_executions: int = REASONER_DEFAULTS.max_executions
    seed: int = REASONER_DEFAULTS.seed
    template: str = ""
    prompt_version: str = ""
    limits: Limits = field(default_factory=Limits)
    chat: bool = False
    tokenizer_name: str | None = None

    @property
    def turn_limits(self) -> TurnLimits:
        return TurnLimits(max_tokens=self.max_tokens, max_executions=self.max_executions)


@dataclass
class Outcome:
    """What one drive of a turn produced, beyond the turn itself."""

    turn: Turn
    ids: list[int] | None  # the whole sequence (prompt + response), None in chat mode
    prompt_tokens: int = 0
    completion_tokens: int = 0  # model-written tokens of this drive
    executor_tokens: int = 0
    exec_seconds: float = 0.0
    error: GenerationError | None = None


def request_seed(seed: int, key: tuple[str, int], round_: int) -> int:
    """A per-request seed derived from the run seed, the trajectory and the round."""
    return zlib.crc32(f"{seed}:{key[0]}:{key[1]}:{round_}".encode()) & 0x7FFFFFFF


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


def keep_ids(flow: list[dict[str, Any]], last: dict[str, Any] | None, new_ids: list[int]) -> None:
    """Record the ids of the text just appended to `flow` (whose last segment was `last`) on
    the segment that took it: a new segment gets them, a segment extended in place gets them
    appended (one written without ids, e.g. resumed from text, stays so)."""
    seg = flow[-1]
    if seg is not last:
        seg["ids"] = list(new_ids)
    elif isinstance(seg.get("ids"), list):
        seg["ids"] = seg["ids"] + list(new_ids)


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
        self.turn_limits = config.turn_limits
        self.stops = stop_ids(tokenizer) if tokenizer is not None else set()
        self.tokens = 0
        self.executions = 0
        self.requests = 0

    # -- token counting ------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        if self.tokenizer is None:  # chat mode without a tokenizer: a rough count
            return max(1, len(text) // 4) if text else 0
        return count_tokens(self.tokenizer, text)

    def messages_for(self, record: dict[str, Any]) -> list[dict[str, str]]:
        """The record's chat messages (its own, or the Reasoner prompt for its question)."""
        return record.get("messages") or build_messages(
            record["question"], self.config.template, self.config.max_executions
        )

    # -- one request ---------------------------------------------------------------------------
    async def _request(
        self, key: tuple[str, int], request: Request, max_tokens: int, seed: int, route: int
    ) -> Completion:
        cfg = self.config
        digest = ""
        if self.cache is not None:
            what = request.text if request.messages is None else repr(request.messages)
            digest = hashlib.sha256(
                repr(
                    (
                        cfg.model,
                        what,
                        max_tokens,
                        cfg.sampling.temperature,
                        cfg.sampling.top_p,
                        sorted(cfg.sampling.extra.items()),
                        seed,
                    )
                ).encode()
            ).hexdigest()
            hit = self.cache.get(key, digest)
            if hit is not None:
                return hit
        completion = await self.engine.complete(
            request, max_tokens=max_tokens, sampling=cfg.sampling, seed=seed, route=route
        )
        self.requests += 1
        if self.cache is not None:
            self.cache.put(key, digest, completion)
        return completion

    async def execute(self, code: str) -> ExecResult:
        self.executions += 1
        return await self.runner.run(code, self.config.limits)

    # -- the turn ------------------------------------------------------------------------------
    async def drive(
        self,
        key: tuple[str, int],
        messages: list[dict[str, str]],
        turn: Turn,
        ids: list[int] | None,
        prompt_text: str,
    ) -> Outcome:
        """Run `turn` (new or resumed) until the turn rules finish it. `ids` is the sequence so
        far (prompt + flow), extended in place."""
        cfg = self.config
        out = Outcome(turn, ids)
        route = zlib.crc32(f"{key[0]}:{key[1]}".encode())
        action: Any = next_request(turn, self.turn_limits)
        while not isinstance(action, Finish):
            if isinstance(action, Generate):
                context = flow_text(turn.flow)
                request = Request(
                    ids,
                    prompt_text + context,
                    chat_messages(messages, turn.flow) if cfg.chat else None,
                )
                seed = request_seed(cfg.seed, key, turn.rounds)
                try:
                    comp = await self._request(key, request, action.max_tokens, seed, route)
                except GenerationError as err:
                    out.error, turn.finish = err, "error"
                    break
                if comp.finish in ERROR_FINISHES:
                    out.error = GenerationError(
                        f"finish_{comp.finish}",
                        f"the engine ended the request with {comp.finish!r}",
                    )
                    turn.finish = "error"
                    break
                # the turn's stop rule, the engine's ids kept as far as the cut text reaches
                taken = take_completion(
                    self.tokenizer,
                    comp.text,
                    comp.ids,
                    comp.finish,
                    model_text(turn.flow),
                    self.stops,
                    engine_tokens=comp.completion_tokens,
                )
                if ids is not None and taken.ids is not None:
                    ids.extend(taken.ids)
                out.completion_tokens += taken.tokens
                self.tokens += taken.tokens
                last = turn.flow[-1] if turn.flow else None
                action = after_generation(
                    turn, self.turn_limits, taken.text, taken.finish, taken.tokens
                )
                if ids is not None and taken.ids is not None and taken.text:
                    keep_ids(turn.flow, last, taken.ids)
                continue
            if isinstance(action, Execute):
                t = time.perf_counter()
                try:
                    result: Any = await self.execute(action.code)
                except SandboxUnavailable as err:  # the sandbox's failure, not the code's
                    out.error = GenerationError("SandboxUnavailable", str(err)[:500])
                    turn.finish = "error"
                    break
                out.exec_seconds += time.perf_counter() - t
            else:
                assert isinstance(action, Skip)
                result = SkippedResult(action.message)
            segment = output_segment(result)
            # program output never becomes a special token (a printed "<|im_end|>")
            seg_ids = executor_ids(self.tokenizer, segment["text"]) if self.tokenizer else None
            if ids is not None and seg_ids is not None:
                ids.extend(seg_ids)
            n = len(seg_ids) if seg_ids is not None else self.count_tokens(segment["text"])
            out.executor_tokens += n
            action = after_output(turn, self.turn_limits, segment, n)
        return out

    def _start(self, messages: list[dict[str, str]]) -> tuple[list[int] | None, str]:
        """The prompt's ids (token layer) and its text; no ids without a tokenizer."""
        if self.tokenizer is None:
            return None, ""
        return prompt_ids(self.tokenizer, messages), render_prompt(self.tokenizer, messages)

    async def trajectory(self, problem: dict[str, Any], sample: int) -> dict[str, Any]:
        """One new trajectory for `problem`: the problem's keys plus sample, messages, flow, gen."""
        t = time.perf_counter()
        record = dict(problem)
        record["sample"] = sample
        messages = self.messages_for(record)
        record["messages"] = messages
        ids, prompt_text = self._start(messages)
        prompt_tokens = len(ids) if ids is not None else 0
        if self.config.chat:
            ids = None  # chat turns have no single sequence
        out = await self.drive((str(record["id"]), sample), messages, Turn(), ids, prompt_text)
        out.prompt_tokens = prompt_tokens
        record["flow"] = out.turn.flow
        record["gen"] = self.stamp(out, time.perf_counter() - t)
        if out.error is not None:
            set_error(record, "or-gen", out.error.type, out.error.message)
        # the chat template opened the think block (Qwen3 thinking models): a turn that never
        # closes it ended inside its thinking, and or-score gives it no final answer
        record["gen"]["prompt_opens_think"] = prompt_text.rstrip().endswith("<think>")
        return record

    async def resume(self, record: dict[str, Any], flow: list[dict[str, Any]]) -> Outcome:
        """Continue `flow` (a cut trajectory ending in a hint) as the same assistant turn: the
        sequence is the token layer's encoding of the prompt and the flow, and what the flow
        already used counts against the budget."""
        messages = self.messages_for(record)
        key = (str(record["id"]), int(record.get("sample") or 0))
        if self.tokenizer is None:
            used = sum(self.count_tokens(s.get("text", "")) for s in flow)
            return await self.drive(key, messages, resumed_turn(flow, used), None, "")
        enc = encode(self.tokenizer, messages, flow, None)
        ids = None if self.config.chat else enc.input_ids
        prompt_text = render_prompt(self.tokenizer, messages)
        out = await self.drive(
            key, messages, resumed_turn(flow, enc.response_tokens), ids, prompt_text
        )
        out.prompt_tokens = enc.prompt_tokens
        return out

    def stamp(self, out: Outcome, seconds: float) -> dict[str, Any]:
        cfg = self.config
        turn = out.turn
        gen: dict[str, Any] = {
            "model": cfg.model,
            "backend": cfg.backend,
            "temperature": cfg.sampling.temperature,
            "top_p": cfg.sampling.top_p,
            "seed": cfg.seed,
            "max_tokens": cfg.max_tokens,
            "max_executions": cfg.max_executions,
            "finish": turn.finish or "stop",
            "executions": turn.executions,
            "rounds": turn.rounds,
            "prompt_tokens": out.prompt_tokens,
            "completion_tokens": out.completion_tokens,
            "executor_tokens": out.executor_tokens,
            "seconds": round(seconds, 3),
            "exec_seconds": round(out.exec_seconds, 3),
            "prompt_version": cfg.prompt_version,
            "tool_version": TOOL_VERSION,
            "mode": "chat" if cfg.chat else "completion",
            "token_ids": self.token_source(),
        }
        if cfg.tokenizer_name:
            gen["tokenizer"] = cfg.tokenizer_name
        if cfg.sampling.extra:
            gen["sampling_extra"] = cfg.sampling.extra
        return gen

    def token_source(self) -> str:
        """Where the generated ids came from: the engine (exact), re-tokenized text, or none."""
        if self.config.chat or self.tokenizer is None:
            return "none"
        return "engine" if getattr(self.engine, "returns_ids", False) else "retokenized"
