"""The record model every tool shares: problems, trajectories and their segments.

Records stay plain dicts: tools must keep every key they do not own, and a dict round-trips
unknown keys for free. This module names the parts, checks the fields a tool needs, and builds
error records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

TOOL_VERSION = "0.1.0"

Role = Literal["reasoner", "executor", "intervener"]
ROLES: tuple[str, ...] = ("reasoner", "executor", "intervener")
#: Roles whose tokens are trained on; executor output is never a training target.
TRAINED_ROLES: frozenset[str] = frozenset({"reasoner", "intervener"})

#: The key each tool writes its findings under. No tool writes another tool's key.
TOOL_KEYS: dict[str, str] = {
    "or-gen": "gen",
    "or-exec": "exec",
    "or-intervene": "calm",
    "or-annotate": "flaws",
    "or-filter": "filter",
    "or-score": "score",
    "or-sft": "sft",
    "or-grpo": "grpo",
}

#: Answers that mean "no optimum exists" instead of a number.
SPECIAL_ANSWERS: frozenset[str] = frozenset({"infeasible", "unbounded"})


class Segment(TypedDict, total=False):
    """One piece of the assistant turn; `text` fields concatenate to the whole turn."""

    role: Role
    text: str
    status: str  # executor only: ok | error | timeout | memory | killed | skipped
    seconds: float  # executor only
    trigger: int  # intervener only


class ToolError(TypedDict):
    tool: str
    type: str
    message: str


class RecordError(ValueError):
    """A record lacks a field the tool needs, or a field has the wrong type."""


Key = tuple[str, int | None]


def record_key(record: Mapping[str, Any]) -> Key:
    """The identity of a record: `(id, sample)`; problems have sample None."""
    sample = record.get("sample")
    return (str(record["id"]), sample if isinstance(sample, int) else None)


def flow_text(flow: Iterable[Mapping[str, Any]]) -> str:
    """The exact assistant text: the concatenation of every segment's text."""
    return "".join(seg["text"] for seg in flow)


def require(record: Mapping[str, Any], *fields: str) -> None:
    """Raise RecordError naming the first of `fields` the record lacks."""
    for field in fields:
        if field not in record:
            raise RecordError(f"missing field {field!r}")


def check_problem(record: Mapping[str, Any]) -> None:
    """Validate the fields of a problem record: a string or integer `id` and a string `question`."""
    require(record, "id", "question")
    if not isinstance(record["id"], str | int) or isinstance(record["id"], bool):
        raise RecordError(f"field 'id' must be a string, got {type(record['id']).__name__}")
    if not isinstance(record["question"], str):
        raise RecordError("field 'question' must be a string")


def check_trajectory(record: Mapping[str, Any]) -> None:
    """Validate the fields of a trajectory record: an id and a well-formed flow."""
    require(record, "id", "flow")
    flow = record["flow"]
    if not isinstance(flow, list):
        raise RecordError("field 'flow' must be a list of segments")
    for i, seg in enumerate(flow):
        if not isinstance(seg, dict):
            raise RecordError(f"flow[{i}] must be an object")
        if seg.get("role") not in ROLES:
            raise RecordError(f"flow[{i}].role must be one of {', '.join(ROLES)}")
        if not isinstance(seg.get("text"), str):
            raise RecordError(f"flow[{i}].text must be a string")


def set_error(record: dict[str, Any], tool: str, type_: str, message: str) -> dict[str, Any]:
    """Mark `record` as failed by `tool`, under that tool's own key, and return it."""
    key = TOOL_KEYS.get(tool, tool)
    section = record.get(key)
    if not isinstance(section, dict):
        section = {}
        record[key] = section
    section["error"] = ToolError(tool=tool, type=type_, message=message)
    return record


def find_error(record: Mapping[str, Any]) -> ToolError | None:
    """The first error any tool recorded on this record, else None."""
    top = record.get("error")
    if isinstance(top, dict):
        return top  # type: ignore[return-value]
    for key in TOOL_KEYS.values():
        section = record.get(key)
        if isinstance(section, dict) and isinstance(section.get("error"), dict):
            return section["error"]
    return None


def completion_tokens(record: Mapping[str, Any]) -> int | None:
    """Tokens the model wrote: of the corrected flow (`calm.final`) if any, else of the generation."""
    calm = record.get("calm")
    final = calm.get("final") if isinstance(calm, dict) else None
    for section in (final, record.get("gen")):
        if isinstance(section, dict) and isinstance(section.get("completion_tokens"), int):
            return section["completion_tokens"]
    return None
