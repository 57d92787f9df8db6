"""asyncio helpers for tools that keep many records in flight (model calls, sandbox jobs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


async def threaded_aiter(items: Iterator[Any]) -> Any:
    """Iterate a blocking iterator (e.g. `ToolRun.records()` on stdin) from asyncio without
    stalling the event loop while it waits for the next line."""
    import asyncio

    loop = asyncio.get_running_loop()
    done = object()
    while (item := await loop.run_in_executor(None, next, items, done)) is not done:
        yield item


async def run_concurrently(items: Any, limit: int, handle: Callable[[Any], Any]) -> None:
    """Await `handle(item)` for every item of an async iterator, at most `limit` at a time,
    reading ahead only as far as the limit allows. Everything started is awaited, also when
    reading stops early (--strict, a closed pipe)."""
    import asyncio

    sem = asyncio.Semaphore(limit)
    tasks: set[asyncio.Task] = set()

    async def guarded(item: Any) -> None:
        try:
            await handle(item)
        finally:
            sem.release()

    try:
        async for item in items:
            await sem.acquire()
            task = asyncio.create_task(guarded(item))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
