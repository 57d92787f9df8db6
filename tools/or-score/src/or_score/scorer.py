"""Scoring runs: the verdict reasons, and or-score --execute (records are scored by
`or_common.scoring.score_record`, which or-grpo's reward shares)."""

from __future__ import annotations

from typing import Any

from or_common.records import RecordError
from or_common.scoring import score_record

REASONS = ("correct", "wrong", "no_answer", "truncated", "exec_error", "gen_error", "no_reference")


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
