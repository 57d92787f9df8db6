"""The code-in-thinking rollout in token ids, independent of verl.

One trajectory: the prompt's ids, then rounds of generation driven by the shared turn step
(`or_common.turn`), the same step or-gen's loop uses:

- each round asks the engine for at most what is left of the response budget, with the
  turn's stop strings (the closing fence line, a model-written output opening) and
  `include_stop_str_in_output`, so the engine returns the fence itself;
- the generated ids are kept verbatim. The engine does not say which stop matched, and its
  last token may run past the fence (one token holding "`\\n\\n"): the completion is decoded,
  cut by the turn rules, and only the piece of the last token that is kept is re-tokenized
  (`or_common.tokens.take_completion`, the same step or-gen's loop takes). Kept ids carry the
  engine's log probs; a re-tokenized tail carries the log prob of the token it was cut from
  (the closest figure the engine gave for that text);
- a closed ```python block runs in the sandbox (at most `max_executions` times, then the
  "no longer available" block); the output block's ids (`executor_ids`: no text a program
  prints becomes a special token) are appended with mask 0 and log prob 0;
- the response is cut to `response_length` at the end (verl pads but never truncates);
- a request the engine aborted (verl's `stop_reason == "aborted"`: a weight update paused the
  replica) is asked again from the same point, never scored as a finished turn.

The reward judges only the model's own tokens: `model_segments` decodes the runs of mask 1 on
their own, and the agent loop hands them to the reward (decoded text cannot be split back into
model text and program output: normalisation and special-token parsing change it).

The token sequence is what `or_common.tokens.encode(tokenizer, messages, flow, finish)`
produces for the same flow whenever each generation's ids are the tokenizer's own encoding of
its text (asserted in tests/test_grpo.py); ids the engine produced differently stay verbatim.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from or_common.flow import code_blocks
from or_common.reasoner import REASONER_DEFAULTS
from or_common.tokens import executor_ids, stop_ids, take_completion
from or_common.turn import (
    STOPS,
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
)

#: generate(prompt_ids, sampling_params) -> an object with token_ids, log_probs, extra_fields
#: (verl's TokenOutput); execute(code) -> an object with status, stdout, stderr, seconds,
#: message (or-exec's ExecResult).
GenerateFn = Callable[[list[int], dict[str, Any]], Awaitable[Any]]
ExecuteFn = Callable[[str], Awaitable[Any]]


#: How often one trajectory's request may be aborted (and asked again) before it fails.
MAX_ABORTS = 8


class RolloutAborted(RuntimeError):
    """The engine kept aborting a trajectory's request: it has no honest reward."""


@dataclass
class Rollout:
    """One finished trajectory: the ids verl trains on and what happened along the way."""

    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    response_logprobs: list[float] | None
    turn: Turn
    requests: int = 0
    aborted: int = 0  # requests the engine aborted (asked again)
    global_steps: list[Any] = field(default_factory=list)

    @property
    def finish(self) -> str:
        return self.turn.finish or "stop"

    @property
    def flow(self) -> list[dict[str, Any]]:
        return self.turn.flow

    def metrics(self) -> dict[str, Any]:
        """Per-trajectory behaviour figures (the paper's curves are their means per step)."""
        statuses = Counter(s.get("status") for s in self.flow if s.get("role") == "executor")
        return {
            "code_blocks": code_blocks(self.flow),
            "executions": self.turn.executions,
            "exec_statuses": dict(sorted(statuses.items())),
            "response_tokens": len(self.response_ids),
            "finish": self.finish,
            "requests": self.requests,
            "aborted_requests": self.aborted,
        }


def model_segments(
    tokenizer: Any, ids: Sequence[int], mask: Sequence[int], stops: set[int]
) -> list[str | None]:
    """The response as the reward must see it: one entry per run of equal mask, the model's own
    text (a run of mask 1, decoded on its own, without a final end-of-turn id) or None for
    program output (a run of mask 0), whose text is never read."""
    segments: list[str | None] = []
    start = 0
    for end in range(1, len(ids) + 1):
        if end < len(ids) and mask[end] == mask[start]:
            continue
        if mask[start]:
            run = list(ids[start:end])
            if end == len(ids) and run and run[-1] in stops:
                run.pop()
            segments.append(tokenizer.decode(run, skip_special_tokens=False))
        else:
            segments.append(None)
        start = end
    return segments


async def rollout(
    tokenizer: Any,
    prompt_ids: list[int],
    generate: GenerateFn,
    execute: ExecuteFn,
    sampling_params: dict[str, Any],
    response_length: int,
    max_executions: int = REASONER_DEFAULTS.max_executions,
) -> Rollout:
    """Run one trajectory to its end (see the module docstring)."""
    limits = TurnLimits(max_tokens=response_length, max_executions=max_executions)
    turn = Turn()
    want_logprobs = bool(sampling_params.get("logprobs"))
    stops = stop_ids(tokenizer)
    ids: list[int] = []
    mask: list[int] = []
    lps: list[float] = []
    result = Rollout(prompt_ids, ids, mask, lps if want_logprobs else None, turn)
    action: Any = next_request(turn, limits)
    while not isinstance(action, Finish):
        if isinstance(action, Generate):
            params = {
                **sampling_params,
                "stop": list(STOPS),
                "include_stop_str_in_output": True,
                "max_tokens": action.max_tokens,
            }
            out = await generate(prompt_ids + ids, params)
            result.requests += 1
            if getattr(out, "stop_reason", None) == "aborted":
                # verl aborted the request (weights being updated, a paused replica): what it
                # returned is not what the model meant; ask again from the same point
                result.aborted += 1
                if result.aborted > MAX_ABORTS:
                    raise RolloutAborted(
                        f"the engine aborted this trajectory's request {result.aborted} times"
                    )
                await asyncio.sleep(min(0.1 * 2**result.aborted, 5.0))
                continue
            result.global_steps.append(
                (getattr(out, "extra_fields", None) or {}).get("global_steps")
            )
            out_lps = getattr(out, "log_probs", None) or None
            if want_logprobs and (out_lps is None or len(out_lps) != len(out.token_ids)):
                raise ValueError(
                    f"the engine returned {len(out.token_ids)} ids but "
                    f"{0 if out_lps is None else len(out_lps)} log probs"
                )
            generated = list(out.token_ids)
            # the engine gives no finish reason: a completion that fills its budget without
            # ending on a stop id ran out of it
            ended = bool(generated) and generated[-1] in stops
            finish = "stop" if ended or len(generated) < action.max_tokens else "length"
            taken = take_completion(
                tokenizer,
                None,
                generated,
                finish,
                model_text(turn.flow),
                stops,
                log_probs=out_lps if want_logprobs else None,
            )
            kept = taken.ids_with_end
            ids.extend(kept)
            mask.extend([1] * len(kept))
            if want_logprobs:
                lps.extend(taken.log_probs or [])
            action = after_generation(turn, limits, taken.text, taken.finish, len(kept))
            continue
        if isinstance(action, Execute):
            exec_result: Any = await execute(action.code)
        else:
            assert isinstance(action, Skip)
            exec_result = SkippedResult(action.message)
        segment = output_segment(exec_result)
        out_ids = executor_ids(tokenizer, segment["text"])
        ids.extend(out_ids)
        mask.extend([0] * len(out_ids))
        if want_logprobs:
            lps.extend([0.0] * len(out_ids))
        action = after_output(turn, limits, segment, len(out_ids))
    if len(ids) > response_length:  # an output block (or a re-tokenized tail) ran past the budget
        del ids[response_length:], mask[response_length:], lps[response_length:]
        turn.finish = "length"
    return result
