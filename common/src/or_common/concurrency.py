"""Running a tool's records concurrently from asyncio: reading a blocking record iterator without
stalling the event loop, and a bounded set of workers whose first exception ends the run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any


async def threaded_aiter(items: Iterator[Any]) -> Any:
    """Iterate a blocking iterator (e.g. `ToolRun.records()` on stdin) from asyncio without
    stalling the event loop while it waits for the next line. The items are taken ahead of
    their work being done: a source that counts finished records (`ToolRun.records()`) is told."""
    read_ahead = getattr(items, "read_ahead", None)
    if read_ahead is not None:
        read_ahead()
    loop = asyncio.get_running_loop()
    done = object()
    while (item := await loop.run_in_executor(None, next, items, done)) is not done:
        yield item


async def run_concurrently(items: Any, limit: int, handle: Callable[[Any], Any]) -> None:
    """Await `handle(item)` for every item of an async iterator, at most `limit` at a time,
    reading ahead only as far as the limit allows. The first exception a handler raises (a bug,
    a closed pipe) stops the reading, cancels the handlers still running and is raised here:
    no worker's exception is ever dropped."""
    sem = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task] = set()
    failures: list[BaseException] = []

    async def guarded(item: Any) -> None:
        try:
            await handle(item)
        except Exception as exc:  # noted before the slot is freed, so reading stops at once
            failures.append(exc)
        finally:
            sem.release()

    async def cancel_all() -> None:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    try:
        async for item in items:
            await sem.acquire()
            if failures:
                break
            task = asyncio.create_task(guarded(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        while tasks and not failures:
            await asyncio.wait(set(tasks), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        await cancel_all()
        raise
    if failures:
        await cancel_all()
        raise failures[0]
