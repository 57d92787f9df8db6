"""The record model every tool shares: problems, trajectories and their segments.

Records stay plain dicts: tools must keep every key they do not own, and a dict round-trips
unknown keys for free. This module names the parts, checks the fields a tool needs, and builds
error records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypedDict, cast

TOOL_VERSION = "0.1.0"

ROLES: tuple[str, ...] = ("reasoner", "executor", "intervener")
#: Roles whose tokens are trained on; executor output is never a training target.
TRAINED_ROLES: frozenset[str] = frozenset({"reasoner", "intervener"})

# -- the words a record's finishes and statuses are written in --------------------------------
# One place for every set of them: the turn rules write them, every reader imports them from here.

#: How a turn ends (`gen.finish`, `calm.final.finish`): "stop" when the model wrote the
#: end-of-turn token; "length" (the token budget), "rounds" (the cap on generation rounds) and
#: "fake_output" (a model that kept writing its own output blocks) when the turn rules cut it;
#: "error" when generation failed.
ENDED_NORMALLY: frozenset[str] = frozenset({"stop"})
#: Finishes of a turn the model did not end itself: it holds no final answer, and no output
#: follows its last block.
CUT_FINISHES: frozenset[str] = frozenset({"length", "rounds", "fake_output"})
#: Engine finish reasons that mean the request did not end as the model meant it (or-gen
#: records them as errors).
ERROR_FINISHES: frozenset[str] = frozenset({"abort", "error", "repetition"})

#: What a sandbox run ends with (an executor segment's `status`, or-exec's results), in the
#: order summaries list them.
EXEC_STATUSES: tuple[str, ...] = ("ok", "error", "timeout", "memory", "killed")
#: Executor statuses that mean the block did not run to completion.
FAILED_EXEC: frozenset[str] = frozenset(EXEC_STATUSES) - {"ok"}
#: The status of an executor segment answering a block closed after the execution limit was
#: reached: nothing ran, and it does not count as an execution.
SKIPPED = "skipped"

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
        return cast(ToolError, top)  # a record's error object has this shape (docs/records.md)
    for key in TOOL_KEYS.values():
        section = record.get(key)
        if isinstance(section, dict) and isinstance(section.get("error"), dict):
            return section["error"]
    return None
