"""Score one record: extract its final answer and compare it with the reference."""

from __future__ import annotations

from typing import Any

from or_common.answers import extract_answer, parse_truth
from or_common.records import RecordError, find_error, flow_text
from or_common.scoring import PROTOCOLS, SCORING_VERSION, compare

REASONS = ("correct", "wrong", "no_answer", "truncated", "exec_error", "gen_error", "no_reference")
FAILED_EXEC = {"error", "timeout", "memory", "killed"}


def response_text(record: dict[str, Any]) -> str:
    """The assistant text: the flow, or a plain `response` string from other harnesses."""
    flow = record.get("flow")
    if isinstance(flow, list):
        try:
            return flow_text(flow)
        except (KeyError, TypeError):
            raise RecordError("flow segments must be objects with a string 'text'") from None
    response = record.get("response")
    if isinstance(response, str):
        return response
    raise RecordError("missing field 'flow' (or a string 'response')")


def finish_reason(record: dict[str, Any]) -> str | None:
    """How generation ended; or-intervene's final flow wins over the original generation."""
    calm = record.get("calm")
    if (
        isinstance(calm, dict)
        and isinstance(calm.get("final"), dict)
        and calm["final"].get("finish")
    ):
        return calm["final"]["finish"]
    gen = record.get("gen")
    return gen.get("finish") if isinstance(gen, dict) else None


def _ended_in_failed_execution(record: dict[str, Any]) -> bool:
    flow = record.get("flow")
    if not isinstance(flow, list) or not flow:
        return False
    last = flow[-1]
    return (
        isinstance(last, dict)
        and last.get("role") == "executor"
        and last.get("status") in FAILED_EXEC
    )


def score_record(record: dict[str, Any], protocol: str = "strict") -> dict[str, Any]:
    """Add `score: {prediction, boxed, correct, rel_error, reason, protocol, version}`."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}")
    if "answer" not in record:
        raise RecordError("missing field 'answer' (use null when unknown)")
    text = response_text(record)
    truth = parse_truth(record["answer"])
    if record["answer"] is not None and truth is None:
        raise RecordError(
            f"field 'answer' is not a number or infeasible/unbounded: {record['answer']!r}"
        )
    boxed, prediction = extract_answer(text)
    correct: bool | None
    correct, rel_error = compare(prediction, truth, protocol) if truth is not None else (None, None)
    error = find_error(record)
    if truth is None:
        reason = "no_reference"
    elif error is not None:
        reason = "exec_error" if error.get("tool") == "or-exec" else "gen_error"
        correct = False
    elif prediction is not None:
        reason = "correct" if correct else "wrong"
    elif finish_reason(record) == "length":
        reason = "truncated"
    elif _ended_in_failed_execution(record):
        reason = "exec_error"
    else:
        reason = "no_answer"
    record["score"] = {
        "prediction": prediction,
        "boxed": boxed,
        "correct": correct,
        "rel_error": rel_error,
        "reason": reason,
        "protocol": protocol,
        "version": SCORING_VERSION,
    }
    return record
