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


#: Records scored per round of --execute (their programs run concurrently).
EXEC_BATCH = 256


def score_by_execution(io: Any, protocol: str, timeout: float, workers: int | None) -> int:
    """or-score --execute: score every record, then judge those with no box by their last
    python block (`execute.py`), in batches, writing records in input order. Returns the exit
    code."""
    import asyncio

    import click
    from or_common.cli import ToolRun

    try:
        from or_exec.limits import Limits
        from or_exec.pool import Pool
    except ImportError:
        raise click.UsageError("--execute needs or-exec installed (uv sync installs it)") from None

    from .execute import execute_all, needs_execution

    async def run_all() -> int:
        pool = Pool(workers=workers, limits=Limits(timeout=timeout))
        try:
            with ToolRun("or-score", io) as run:
                batch: list[Any] = []

                async def flush() -> None:
                    scored, todo = [], []
                    for line in batch:
                        try:
                            score_record(line.record, protocol)
                            code = needs_execution(line.record)
                        except RecordError as err:
                            run.bad_record(line, err)
                            continue
                        scored.append(line.record)
                        if code is not None:
                            todo.append((line.record, code))
                    await execute_all(pool, todo, protocol)
                    for record in scored:
                        run.write(record)
                    batch.clear()

                for line in run.records():
                    batch.append(line)
                    if len(batch) >= EXEC_BATCH:
                        await flush()
                await flush()
        finally:
            await pool.close()
        return run.exit_code

    return asyncio.run(run_all())
