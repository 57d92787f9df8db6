"""Scoring protocols: whether a prediction matches the reference answer.

Published numbers on these benchmarks use different tolerances, so every score names the
protocol that produced it. Each protocol is a pure function `(prediction, truth) -> (correct,
rel_error)` over parsed values (see `answers.parse_truth`).

- `strict` (default; the CALM/STORM paper): |pred - gt| / |gt| <= 1e-3, or |pred| <= 1e-3 when
  gt = 0. An infeasible (unbounded) truth is matched only by an infeasible (unbounded) answer.
- `orlm` (ORLM's published harness): both values rounded to integers with Python's `round`
  (halves to even, as the harness does: 2.5 -> 2), then relative error <= 5 %, or |pred| <= 0.05
  when gt = 0. A "no best solution" truth (our
  `infeasible` / `unbounded`) is matched only by an answer saying there is no optimum.
- `sirl` (SIRL's harness, without its re-running tricks): |pred - gt| / (|gt| + 1) <= 1e-6.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .answers import THINK_END, Prediction, answer_in, answer_region, parse_truth
from .records import RecordError, flow_text

#: Bumped whenever a verdict can change. v2: a cut turn (token budget, round cap) or unfinished
#: thinking has no answer; only gen/exec errors fail a record; orlm rounds halves to even.
SCORING_VERSION = "score-v2"
#: Executor statuses that mean the block did not run to completion.
FAILED_EXEC = frozenset({"error", "timeout", "memory", "killed"})


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    compare: Callable[[float, float], tuple[bool, float]]
    #: Whether any "no optimum" answer matches any "no optimum" truth (orlm) or the words must agree.
    lump_special: bool = False


def _relative(pred: float, gt: float) -> float:
    return abs(pred - gt) / abs(gt) if gt != 0 else abs(pred)


def _strict(pred: float, gt: float) -> tuple[bool, float]:
    err = _relative(pred, gt)
    return err <= 1e-3, err


def _orlm(pred: float, gt: float) -> tuple[bool, float]:
    # ORLM's harness calls Python's round(): halves go to the even neighbour (2.5 -> 2).
    p, g = round(pred), round(gt)
    if g == 0:
        return abs(p) <= 0.05, abs(p)
    err = abs(p - g) / abs(g)
    return err <= 0.05, err


def _sirl(pred: float, gt: float) -> tuple[bool, float]:
    err = abs(pred - gt) / (abs(gt) + 1)
    return err <= 1e-6, err


PROTOCOLS: dict[str, Protocol] = {
    "strict": Protocol("strict", "relative error <= 1e-3 (absolute when the truth is 0)", _strict),
    "orlm": Protocol(
        "orlm", "ORLM: round both to integers, then relative error <= 5%", _orlm, lump_special=True
    ),
    "sirl": Protocol("sirl", "SIRL: |pred - gt| / (|gt| + 1) <= 1e-6", _sirl),
}


def compare(
    prediction: Prediction, truth: Prediction, protocol: str = "strict"
) -> tuple[bool, float | None]:
    """Return `(correct, rel_error)`; rel_error is None when either side is not a number."""
    proto = PROTOCOLS[protocol]
    if prediction is None:
        return False, None
    if isinstance(truth, str) or isinstance(prediction, str):
        if isinstance(truth, str) and isinstance(prediction, str):
            return (True if proto.lump_special else truth == prediction), None
        return False, None
    assert truth is not None
    return proto.compare(float(prediction), float(truth))


#: Finish reasons of a turn the model did not end itself: the token budget, the cap on
#: generation rounds, a model stopped for writing its own output blocks.
CUT_FINISHES = frozenset({"length", "rounds", "fake_output"})
THINK_START = "<think>"


def finish_reason(record: Mapping[str, Any]) -> str | None:
    """How the turn ended; or-intervene's final flow (`calm.final.finish`) wins over `gen`."""
    calm = record.get("calm")
    final = calm.get("final") if isinstance(calm, dict) else None
    if isinstance(final, dict) and final.get("finish"):
        return final["finish"]
    gen = record.get("gen")
    return gen.get("finish") if isinstance(gen, dict) else None


def response_text(record: Mapping[str, Any]) -> str:
    """The model's own text, where its answer is looked for: the flow without its executor
    segments (a `\\boxed{}` a program printed is never the model's answer), or a plain
    `response` string from other harnesses."""
    flow = record.get("flow")
    if isinstance(flow, list):
        try:
            return flow_text(seg for seg in flow if seg.get("role") != "executor")
        except (AttributeError, KeyError, TypeError):
            raise RecordError("flow segments must be objects with a string 'text'") from None
    response = record.get("response")
    if isinstance(response, str):
        return response
    raise RecordError("missing field 'flow' (or a string 'response')")


def upstream_failure(record: Mapping[str, Any]) -> str | None:
    """`gen_error` / `exec_error` when generation or execution failed; an error another tool
    recorded (an Intervener's, an annotator's) says nothing about the answer."""
    for key, reason in (("gen", "gen_error"), ("exec", "exec_error")):
        section = record.get(key)
        if isinstance(section, dict) and section.get("error"):
            return reason
    return None


def _ended_in_failed_execution(record: Mapping[str, Any]) -> bool:
    flow = record.get("flow")
    last = flow[-1] if isinstance(flow, list) and flow else None
    return (
        isinstance(last, dict)
        and last.get("role") == "executor"
        and last.get("status") in FAILED_EXEC
    )


#: How much of the end of a turn the checksum reads: the answer is there, and hashing whole
#: 20 KB turns would cost or-score a fifth of its speed.
CHECKSUM_TAIL = 4096


def checksum(text: str, finish: str | None) -> int:
    """A fingerprint of what a score was computed from (the turn's length, its end and how it
    ended), so a reader can tell a score that belongs to another flow: any rewrite by a tool
    (a hint and a new continuation, an appended output block) changes it."""
    head = f"{finish}\0{len(text)}\0".encode()
    return zlib.crc32(text[-CHECKSUM_TAIL:].encode("utf-8", "surrogatepass"), zlib.crc32(head))


def _prompt_opens_think(record: Mapping[str, Any]) -> bool:
    gen = record.get("gen")
    return isinstance(gen, Mapping) and gen.get("prompt_opens_think") is True


def judge(
    record: Mapping[str, Any],
    protocol: str = "strict",
    text: str | None = None,
    finish: str | None | bool = False,
) -> dict[str, Any]:
    """The verdict on a record's final answer, as the `score` object or-score writes.

    `text` and `finish` default to the record's flow and finish reason. The rules, in order:
    no reference -> `no_reference` (correct is None); an error under `gen` or `exec` ->
    `gen_error` / `exec_error`; a turn cut before it ended (`finish` in CUT_FINISHES) or still
    inside a think block it opened -> `truncated`, with no prediction; a parsed number ->
    `correct` / `wrong`; a last code block that failed -> `exec_error`; else `no_answer`.
    A turn without `</think>` whose prompt opened the think block (`gen.prompt_opens_think`,
    stamped by or-gen: Qwen3 thinking templates end the prompt with `<think>`) ended inside its
    thinking: `truncated`. Without that stamp and without an opening `<think>` in its text, a
    turn that ended on its own is read whole: it cannot be told apart from the answer of a model
    that does not think in tags.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    if text is None:
        text = response_text(record)
    if finish is False:
        finish = finish_reason(record)
    truth = parse_truth(record.get("answer"))
    region = answer_region(text)
    # a <think> in the answer region is one opened after the last </think> and never closed;
    # a prompt that opened the think block (or-gen stamps it) needs a </think> in the turn
    cut = (
        finish in CUT_FINISHES
        or THINK_START in region
        or (_prompt_opens_think(record) and THINK_END not in text)
    )
    boxed, prediction = (None, None) if cut else answer_in(region)
    correct: bool | None = None
    rel_error: float | None = None
    if truth is not None:
        correct, rel_error = compare(prediction, truth, protocol)
    failure = upstream_failure(record)
    if truth is None:
        reason = "no_reference"
    elif failure is not None:
        reason, correct = failure, False
    elif cut:
        reason = "truncated"
    elif prediction is not None:
        reason = "correct" if correct else "wrong"
    elif _ended_in_failed_execution(record):
        reason = "exec_error"
    else:
        reason = "no_answer"
    return {
        "prediction": prediction,
        "boxed": boxed,
        "correct": correct,
        "rel_error": rel_error,
        "reason": reason,
        "protocol": protocol,
        "version": SCORING_VERSION,
        "checksum": checksum(text, finish),  # type: ignore[arg-type]
    }


def current_score(record: Mapping[str, Any], protocol: str | None = None) -> dict[str, Any]:
    """The record's `score` when it is still valid (this scoring version, the same flow and
    finish, the wanted protocol), else a fresh verdict. A score left behind by a tool that
    changed the flow is never trusted. `protocol` defaults to the stored score's, else strict."""
    score = record.get("score")
    stored = score if isinstance(score, dict) else {}
    protocol = protocol or stored.get("protocol") or "strict"
    if protocol not in PROTOCOLS:
        protocol = "strict"
    if stored.get("version") == SCORING_VERSION and stored.get("protocol") == protocol:
        text = response_text(record)
        if stored.get("checksum") == checksum(text, finish_reason(record)):
            return stored
        return judge(record, protocol, text)
    return judge(record, protocol)


def flow_correct(
    record: Mapping[str, Any],
    flow: list,
    protocol: str = "strict",
    finish: str | None | bool = False,
) -> bool | None:
    """Whether the final answer of `flow` (ended with `finish`) matches the record's reference,
    by the same rules as or-score; None without a reference."""
    return judge(record, protocol, flow_text(flow), finish)["correct"]
