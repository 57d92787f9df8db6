"""Scoring protocols: whether a prediction matches the reference answer.

Published numbers on these benchmarks use different tolerances, so every score names the
protocol that produced it, with its tolerance when that is not the protocol's own default:
`orlm:1e-4` is ORLM's rule with a 1e-4 tolerance (as Evo-Step runs ORLM's harness). Each
protocol is a pure function `(prediction, truth, tolerance) -> (correct, rel_error)` over parsed
values (see `answers.parse_truth`).

- `strict` (default; the CALM/STORM paper; tolerance 1e-3): |pred - gt| / |gt| <= tol, or
  |pred| <= tol when gt = 0. An infeasible (unbounded) truth is matched only by an infeasible
  (unbounded) answer.
- `orlm` (ORLM's published harness, `eval/execute.py`; tolerance 0.05): both values rounded to
  integers with Python's `round` (halves to even, as the harness does: 2.5 -> 2), then relative
  error <= tol, or |pred| <= tol when gt = 0. A "no best solution" truth (our `infeasible` /
  `unbounded`) is matched only by an answer saying there is no optimum.
- `sirl` (SIRL's harness, without its re-running tricks; tolerance 1e-6):
  |pred - gt| / (|gt| + 1) <= tol.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .answers import (
    THINK_END,
    Prediction,
    answer_format,
    answer_region,
    extract_boxed_all,
    parse_number,
    parse_truth,
)
from .flow import final_turn
from .records import CUT_FINISHES, FAILED_EXEC, RecordError, flow_text

#: Bumped whenever a verdict can change. v2: a cut turn (token budget, round cap) or unfinished
#: thinking has no answer; only gen/exec errors fail a record; orlm rounds halves to even.
SCORING_VERSION = "score-v2"


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    compare: Callable[[float, float, float], tuple[bool, float]]
    #: The tolerance of the published harness; `name:TOL` takes another.
    tolerance: float
    #: Whether any "no optimum" answer matches any "no optimum" truth (orlm) or the words must agree.
    lump_special: bool = False


def _relative(pred: float, gt: float) -> float:
    return abs(pred - gt) / abs(gt) if gt != 0 else abs(pred)


def _strict(pred: float, gt: float, tol: float) -> tuple[bool, float]:
    err = _relative(pred, gt)
    return err <= tol, err


def _orlm(pred: float, gt: float, tol: float) -> tuple[bool, float]:
    # ORLM's harness calls Python's round(): halves go to the even neighbour (2.5 -> 2).
    p, g = round(pred), round(gt)
    if g == 0:
        return abs(p) <= tol, abs(p)
    err = abs(p - g) / abs(g)
    return err <= tol, err


def _sirl(pred: float, gt: float, tol: float) -> tuple[bool, float]:
    err = abs(pred - gt) / (abs(gt) + 1)
    return err <= tol, err


PROTOCOLS: dict[str, Protocol] = {
    "strict": Protocol(
        "strict", "relative error <= TOL (absolute when the truth is 0)", _strict, 1e-3
    ),
    "orlm": Protocol(
        "orlm",
        "ORLM: round both to integers, then relative error <= TOL",
        _orlm,
        0.05,
        lump_special=True,
    ),
    "sirl": Protocol("sirl", "SIRL: |pred - gt| / (|gt| + 1) <= TOL", _sirl, 1e-6),
}


def _short(tol: float) -> str:
    """1e-4 for 0.0001, 5e-2 for 0.05: the spelling papers use."""
    mantissa, exponent = f"{tol:.12e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}"


@functools.lru_cache(maxsize=64)
def parse_protocol(spec: str) -> tuple[Protocol, float]:
    """`name` or `name:TOL` -> (protocol, tolerance). Raises ValueError with a message that
    names the protocols."""
    name, colon, tol_text = spec.partition(":")
    proto = PROTOCOLS.get(name)
    if proto is None:
        raise ValueError(
            f"unknown protocol {spec!r}: use one of {', '.join(sorted(PROTOCOLS))},"
            " optionally with a tolerance (orlm:1e-4)"
        )
    if not colon:
        return proto, proto.tolerance
    try:
        tol = float(tol_text)
    except ValueError:
        tol = float("nan")
    if not (tol > 0 and tol < float("inf")):
        raise ValueError(f"protocol {spec!r}: the tolerance must be a positive number")
    return proto, tol


@functools.lru_cache(maxsize=64)
def canonical_protocol(spec: str) -> str:
    """The name a score is stamped with: `orlm` for ORLM's own tolerance (`orlm:0.05` too),
    `orlm:1e-4` for another. Raises ValueError for an unknown protocol."""
    proto, tol = parse_protocol(spec)
    return proto.name if tol == proto.tolerance else f"{proto.name}:{_short(tol)}"


def compare(
    prediction: Prediction, truth: Prediction, protocol: str = "strict"
) -> tuple[bool, float | None]:
    """Return `(correct, rel_error)`; rel_error is None when either side is not a number."""
    proto = PROTOCOLS.get(protocol)
    if proto is not None:  # a bare name: its own tolerance (the hot path of every score)
        tol = proto.tolerance
    else:
        proto, tol = parse_protocol(protocol)
    if prediction is None:
        return False, None
    if isinstance(truth, str) or isinstance(prediction, str):
        if isinstance(truth, str) and isinstance(prediction, str):
            return (True if proto.lump_special else truth == prediction), None
        return False, None
    assert truth is not None
    return proto.compare(float(prediction), float(truth), tol)


THINK_START = "<think>"


def finish_reason(record: Mapping[str, Any]) -> str | None:
    """How the turn ended: the final turn's finish (`flow.final_turn`: or-intervene's final
    flow over `gen`); a record from another harness may say it OpenAI's way (`finish_reason`,
    at the top or in its first `choices` entry)."""
    finish = final_turn(record).get("finish")
    if finish is not None or isinstance(record.get("gen"), dict):
        return finish
    if isinstance(record.get("finish_reason"), str):
        return record["finish_reason"]
    choice = _first_choice(record)
    return choice.get("finish_reason") if choice is not None else None


#: What `response_text` reads, in its order: named in the error for a record it cannot read.
RESPONSE_SHAPES = (
    "'flow' (or-gen), a string 'response' or 'completion', chat 'messages' ending with an"
    " assistant turn, or OpenAI 'choices'"
)


def _first_choice(record: Mapping[str, Any]) -> dict[str, Any] | None:
    choices = record.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        return choices[0]
    return None


def _foreign_response(record: Mapping[str, Any]) -> str | None:
    """The answer text of a record another tool wrote, or None."""
    for key in ("response", "completion"):
        if isinstance(record.get(key), str):
            return record[key]
    messages = record.get("messages")
    if isinstance(messages, list) and messages:
        last = messages[-1]
        if (
            isinstance(last, dict)
            and last.get("role") == "assistant"
            and isinstance(last.get("content"), str)
        ):
            return last["content"]
    choice = _first_choice(record)
    if choice is not None:
        message = choice.get("message")
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            return message["content"]
        if isinstance(choice.get("text"), str):
            return choice["text"]
    return None


def response_text(record: Mapping[str, Any]) -> str:
    """The model's own text, where its answer is looked for: the flow without its executor
    segments (a `\\boxed{}` a program printed is never the model's answer), or the response of
    another harness (see RESPONSE_SHAPES). A record in none of these shapes is an error."""
    flow = record.get("flow")
    if isinstance(flow, list):
        try:
            return flow_text(seg for seg in flow if seg.get("role") != "executor")
        except (AttributeError, KeyError, TypeError):
            raise RecordError("flow segments must be objects with a string 'text'") from None
    text = _foreign_response(record)
    if text is None:
        raise RecordError(f"no response to score: expected {RESPONSE_SHAPES}")
    return text


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
    finish: str | None | Literal[False] = False,
) -> dict[str, Any]:
    """The verdict on a record's final answer, as the `score` object or-score writes.

    `text` and `finish` default to the record's flow and finish reason. The rules, in order:
    no reference -> `no_reference` (correct is None); an error under `gen` or `exec` ->
    `gen_error` / `exec_error`; a turn cut before it ended (`finish` in CUT_FINISHES) or still
    inside a think block it opened -> `truncated`, with no prediction; a parsed number ->
    `correct` / `wrong`; a last code block that failed -> `exec_error`; else `no_answer`.
    `format` says how the answer was written (`answers.answer_format`: ok, units, formula,
    several_boxes; null without a box): a check shown beside the verdict, never changing it.
    A turn without `</think>` whose prompt opened the think block (`gen.prompt_opens_think`,
    stamped by or-gen: Qwen3 thinking templates end the prompt with `<think>`) ended inside its
    thinking: `truncated`. Without that stamp and without an opening `<think>` in its text, a
    turn that ended on its own is read whole: it cannot be told apart from the answer of a model
    that does not think in tags.
    """
    protocol = canonical_protocol(protocol)
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
    boxes = [] if cut else extract_boxed_all(region)
    boxed = boxes[-1] if boxes else None
    prediction = parse_number(boxed) if boxed is not None else None
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
        "checksum": checksum(text, finish),
        "format": answer_format(boxes, prediction) if boxes else None,
    }


def check_scorable(record: Mapping[str, Any]) -> str:
    """Raise RecordError unless the record has a usable `answer` and a response; return the
    response text."""
    if "answer" not in record:
        raise RecordError("missing field 'answer' (use null when unknown)")
    text = response_text(record)
    if record["answer"] is not None and parse_truth(record["answer"]) is None:
        raise RecordError(
            f"field 'answer' is not a number or infeasible/unbounded: {record['answer']!r}"
        )
    return text


def score_record(record: dict[str, Any], protocol: str = "strict") -> dict[str, Any]:
    """Add `score: {prediction, boxed, correct, rel_error, reason, protocol, version, checksum}`
    (the rules are `judge`'s): or-score's scoring of a record, and or-grpo's reward."""
    record["score"] = judge(record, protocol, check_scorable(record))
    return record


def rejudge_prediction(
    record: Mapping[str, Any], stored: Mapping[str, Any], protocol: str
) -> dict[str, Any]:
    """A score's own prediction compared under another protocol (its reason kept unless it
    was correct/wrong)."""
    score = dict(stored, protocol=protocol)
    truth = parse_truth(record.get("answer"))
    if score.get("reason") in ("correct", "wrong") and truth is not None:
        correct, rel_error = compare(score.get("prediction"), truth, protocol)
        score.update(correct=correct, rel_error=rel_error, reason="correct" if correct else "wrong")
    return score


def current_score(record: Mapping[str, Any], protocol: str | None = None) -> dict[str, Any]:
    """The record's `score` when it is still valid (this scoring version, the same flow and
    finish, the wanted protocol), else a fresh verdict. A score left behind by a tool that
    changed the flow is never trusted. `protocol` defaults to the stored score's, else strict."""
    score = record.get("score")
    stored = score if isinstance(score, dict) else {}
    protocol = protocol or stored.get("protocol") or "strict"
    try:
        protocol = canonical_protocol(protocol)
    except ValueError:
        protocol = "strict"
    same = stored.get("protocol") == protocol
    # the optimum a program printed (or-score --execute) is judged again under another protocol
    if stored.get("version") == SCORING_VERSION and (same or stored.get("by") == "execution"):
        text = response_text(record)
        if stored.get("checksum") != checksum(text, finish_reason(record)):
            return judge(record, protocol, text)
        return stored if same else rejudge_prediction(record, stored, protocol)
    return judge(record, protocol)


def flow_correct(
    record: Mapping[str, Any],
    flow: list,
    protocol: str = "strict",
    finish: str | None | Literal[False] = False,
) -> bool | None:
    """Whether the final answer of `flow` (ended with `finish`) matches the record's reference,
    by the same rules as or-score; None without a reference."""
    return judge(record, protocol, flow_text(flow), finish)["correct"]
