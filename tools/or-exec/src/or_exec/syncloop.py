"""The synchronous face of an asyncio pool (SyncPool, SyncRemotePool): the pool's event loop
runs in a thread of its own, and each call waits for its result."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import Future as ThreadFuture
from typing import Any

from .limits import ExecResult, Limits


class SyncFace:
    pool: Any

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def _call(self, coro: Any) -> Any:
        fut: ThreadFuture = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result()

    def run(
        self, code: str, limits: Limits | None = None, prelude: Sequence[str] = (), **kw: Any
    ) -> ExecResult:
        """As the pool's `run` (`stdin`, `files`, `fetch` included)."""
        return self._call(self.pool.run(code, limits, prelude, **kw))

    def close(self) -> None:
        self._call(self.pool.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
