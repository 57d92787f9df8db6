"""Score one record: extract its final answer and compare it with the reference."""

from __future__ import annotations

from typing import Any

from or_common.answers import parse_truth
from or_common.records import RecordError
from or_common.scoring import judge, response_text

REASONS = ("correct", "wrong", "no_answer", "truncated", "exec_error", "gen_error", "no_reference")


def check_scorable(record: dict[str, Any]) -> str:
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
    (the rules are `or_common.scoring.judge`'s)."""
    record["score"] = judge(record, protocol, check_scorable(record))
    return record
