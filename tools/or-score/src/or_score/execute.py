"""Scoring by execution (`or-score --execute`), as ORLM's and OptMATH's harnesses score: a turn
with no boxed answer whose last python block is solver code is judged by the optimum that block
prints.

The output read is the one recorded right after that block (an executor segment, as or-gen and
or-exec write, or a harness's execution log converted into one); a block with no recorded output
is run now in or-exec's sandbox. The printed optimum is, scanning the output from its last line
up, the first line that either says there is no optimum (`no best/optimal/feasible solution`,
`infeasible`, `unbounded`) or names the objective (`objective`, `obj`, `optimal`, `optimum`,
`best solution`, `minimum`, `maximum`, `total <word>`) and holds a number: the last number on
that line. ORLM's harness appends `print(f"Just print the best solution: {model.objval}")`, which
this rule reads as the harness does.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from typing import Any

from or_common.answers import Prediction, answer_region
from or_common.blocks import PYTHON_OPEN
from or_common.records import FAILED_EXEC
from or_common.scoring import compare, response_text, upstream_failure
from or_common.turn import output_body

# Not the turn's block recogniser (`or_common.blocks`): as the harnesses it copies, it reads
# an unclosed last block to the end and any info string after ```python.
_PYTHON = re.compile(r"```python[^\n]*\n(.*?)(?:\n```|$)", re.DOTALL)
_NO_OPTIMUM = re.compile(
    r"\bno\s+(?:best|optimal|feasible)\s+solution|\binfeasible\b|\bunbounded\b", re.IGNORECASE
)
_OBJECTIVE = re.compile(
    r"\b(?:objective|obj|objval|optimal|optimum|best\s+solution|minimum|maximum|total\s+\w+)\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def last_python_block(text: str) -> str | None:
    """The code of the last ```python block of the model's text (unclosed at the end: to the end)."""
    blocks = _PYTHON.findall(text)
    code = blocks[-1] if blocks else None
    return code if code and code.strip() else None


def printed_optimum(output: str) -> Prediction:
    """The optimum a program printed, by the rule in the module docstring; None if none."""
    for line in reversed(output.splitlines()):
        if _NO_OPTIMUM.search(line):
            return "unbounded" if "unbounded" in line.lower() else "infeasible"
        if _OBJECTIVE.search(line):
            numbers = _NUMBER.findall(line)
            if numbers:
                try:
                    return float(numbers[-1].replace(",", ""))
                except ValueError:
                    continue
    return None


def recorded_output(record: dict[str, Any]) -> tuple[str, str] | None:
    """(status, output) of the executor segment after the last segment holding a python block."""
    flow = record.get("flow")
    if not isinstance(flow, list):
        return None
    last_code = max(
        (
            i
            for i, seg in enumerate(flow)
            if isinstance(seg, dict)
            and seg.get("role") != "executor"
            and PYTHON_OPEN in str(seg.get("text", ""))
        ),
        default=None,
    )
    if last_code is None:
        return None
    for seg in flow[last_code + 1 :]:
        if isinstance(seg, dict) and seg.get("role") == "executor":
            text = output_body(str(seg.get("text", "")))
            return str(seg.get("status") or "ok"), text
    return None


def needs_execution(record: dict[str, Any]) -> str | None:
    """The code to judge by, when the score found no box and the turn holds a python block."""
    score = record.get("score")
    reason = score.get("reason") if isinstance(score, dict) else None
    if reason != "no_answer" and not (reason == "exec_error" and upstream_failure(record) is None):
        return None
    return last_python_block(answer_region(response_text(record)))


def apply_execution(record: dict[str, Any], status: str, output: str, protocol: str) -> None:
    """Rewrite the record's score from its program's output (stamped `by: execution`)."""
    from or_common.answers import parse_truth

    score = record["score"]
    prediction = printed_optimum(output) if status == "ok" else None
    correct, rel_error = compare(prediction, parse_truth(record.get("answer")), protocol)
    if status in FAILED_EXEC:
        reason = "exec_error"
    elif prediction is None:
        reason = "no_answer"
    else:
        reason = "correct" if correct else "wrong"
    score.update(
        prediction=prediction,
        correct=correct and reason == "correct",
        rel_error=rel_error,
        reason=reason,
        by="execution",
        exec_status=status,
    )


async def execute_all(
    pool: Any, records: Iterable[tuple[dict[str, Any], str]], protocol: str
) -> None:
    """Judge each (record, code) by its recorded output, or by running the code in `pool`."""

    async def one(record: dict[str, Any], code: str) -> None:
        recorded = recorded_output(record)
        if recorded is not None:
            status, output = recorded
        else:
            result = await pool.run(code)
            status, output = result.status, result.stdout or ""
        apply_execution(record, status, output, protocol)

    async with asyncio.TaskGroup() as group:
        for record, code in records:
            group.create_task(one(record, code))
