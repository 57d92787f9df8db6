"""Run the last code block of trajectory records through a pool (the or-exec CLI's logic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

from or_common.blocks import awaits_execution, flow_blocks
from or_common.protocol import output_segment
from or_common.records import TOOL_VERSION, RecordError, check_trajectory
from or_common.scoring import CUT_FINISHES
from or_common.tokens import record_finish

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
    finish = record_finish(record)
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


async def execute_stream(
    lines: AsyncIterable[Any], runner: Runner, limits: Limits, stateful: bool, window: int
) -> AsyncIterator[tuple[Any, dict[str, Any] | RecordError]]:
    """Execute records concurrently (at most `window` in flight) and yield them in input order."""
    pending: list[tuple[Any, asyncio.Task]] = []

    async def one(record: dict[str, Any]) -> dict[str, Any] | RecordError:
        try:
            return await execute_record(record, runner, limits, stateful)
        except RecordError as err:
            return err
        except SandboxUnavailable as err:  # not the code's fault: an error record, redone later
            record["exec"] = {
                "error": {"tool": "or-exec", "type": "SandboxUnavailable", "message": str(err)},
                "tool_version": TOOL_VERSION,
            }
            return record

    try:
        async for line in lines:
            pending.append((line, asyncio.create_task(one(line.record))))
            while len(pending) >= window or (pending and pending[0][1].done()):
                head, task = pending.pop(0)
                yield head, await task
    except Exception:
        # reading stopped early (--strict): what was read before is still written
        for head, task in pending:
            yield head, await task
        raise
    for head, task in pending:
        yield head, await task
