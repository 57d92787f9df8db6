"""Run the last code block of trajectory records through a pool (the or-exec CLI's logic)."""

from __future__ import annotations

from typing import Any, Protocol

from or_common.blocks import awaits_execution, flow_blocks
from or_common.flow import final_finish
from or_common.records import (
    CUT_FINISHES,
    TOOL_VERSION,
    check_trajectory,
    set_error,
)
from or_common.turn import output_segment

from .limits import ExecResult, Limits
from .server import SandboxUnavailable


class Runner(Protocol):
    async def run(
        self, code: str, limits: Limits | None = None, prelude: Any = ()
    ) -> ExecResult: ...


async def execute_record(
    record: dict[str, Any], runner: Runner, limits: Limits, stateful: bool
) -> dict[str, Any]:
    """Execute the record's last python block; see `or-exec --help` for where the result goes."""
    check_trajectory(record)
    flow = record["flow"]
    blocks = flow_blocks(flow)
    if not blocks:
        return record
    last = blocks[-1]
    prelude = [b.code for b in blocks[:-1] if b.status == "ok"] if stateful else []
    result = await runner.run(last.code, limits, prelude)
    segment = output_segment(result)
    finish = final_finish(record)
    # a turn cut by its budget (or round cap) ended there: the model never reads an output after it
    cut = finish in CUT_FINISHES and awaits_execution(flow)
    appended = awaits_execution(flow) and not cut
    details = {
        **result.to_dict(),
        "mode": "stateful" if stateful else "stateless",
        "block": len(blocks) - 1,
        "appended": appended,
        "limits": {"timeout": limits.timeout, "memory_mb": limits.memory_mb},
        "tool_version": TOOL_VERSION,
    }
    if appended:
        flow.append(segment)
    elif cut:
        details["text"] = segment["text"]
        details["not_appended"] = f"the turn was cut (finish: {finish}); nothing follows it"
    else:
        # The block was already answered: keep the flow valid and say whether the rerun agrees.
        recorded = next((s for s in flow[last.segment + 1 :] if s.get("role") == "executor"), None)
        details["matches_flow"] = recorded is not None and recorded.get("text") == segment["text"]
        details["text"] = segment["text"]
    record["exec"] = details
    return record


async def execute_or_error(
    record: dict[str, Any], runner: Runner, limits: Limits, stateful: bool
) -> dict[str, Any]:
    """`execute_record`, except that an unreachable sandbox server is not the code's fault: the
    record gets an error under `exec` (exit 1, redone with --resume) and no executor segment."""
    try:
        return await execute_record(record, runner, limits, stateful)
    except SandboxUnavailable as err:
        record["exec"] = {}  # a section of a run before says nothing of this one
        set_error(record, "or-exec", "SandboxUnavailable", str(err))
        record["exec"]["tool_version"] = TOOL_VERSION
        return record
