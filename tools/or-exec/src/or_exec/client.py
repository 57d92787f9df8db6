"""Clients of `or-exec serve`: `RemotePool` (asyncio) and `SyncRemotePool` (plain calls), with
the same `run` as a local Pool.

    from or_exec import RemotePool, SyncRemotePool
    async with RemotePool("http://cpu-node:8711", token="...") as pool:
        result = await pool.run("print(6 * 7)")
    with SyncRemotePool("http://cpu-node:8711") as pool:      # e.g. in an RL reward worker
        print(pool.run("print(6 * 7)").stdout)

Connection errors, timeouts, 5xx and 429 answers are retried with exponential backoff (a server
restart takes seconds), and a 503's `Retry-After` is honoured; while it waits, the client says
so on stderr (once, then every 15 s). After `retry_seconds` (default: `OR_EXEC_SANDBOX_WAIT`,
else 120) without an answer, `run` raises SandboxUnavailable. A 4xx answer (a request the
server refuses) raises at once. The bearer token comes from `token` or `OR_EXEC_TOKEN`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from or_common.usage import echo_err

from .limits import ExecResult, Limits
from .syncloop import SyncFace

DEFAULT_WAIT = 120.0
SAY_EVERY = 15.0  # seconds between "still waiting" lines


def default_wait() -> float:
    """How long a client waits for an unreachable server: OR_EXEC_SANDBOX_WAIT, else 120 s."""
    try:
        return float(os.environ.get("OR_EXEC_SANDBOX_WAIT") or DEFAULT_WAIT)
    except ValueError:
        return DEFAULT_WAIT


class SandboxUnavailable(RuntimeError):
    """The sandbox server could not run a job: unreachable after retries, or it refused the
    request. An error of the client (callers write an error record), never a job status."""


class _Retry(Exception):
    def __init__(self, message: str, after: float | None = None):
        super().__init__(message)
        self.after = after


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class RemotePool:
    """The asyncio client (see the module docstring)."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        connections: int = 64,
        retry_seconds: float | None = None,
        token: str | None = None,
    ):
        self.url = url.rstrip("/")
        self.limits = limits or Limits()
        self.connections = connections
        self.retry_seconds = default_wait() if retry_seconds is None else retry_seconds
        self.token = token if token is not None else os.environ.get("OR_EXEC_TOKEN") or None
        self._session: Any = None
        self._said = 0.0

    def _ensure_session(self) -> None:
        import aiohttp

        if self._session is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections), headers=headers
            )

    def _say_waiting(self, exc: BaseException, left: float) -> None:
        now = time.monotonic()
        if now - self._said >= SAY_EVERY:
            self._said = now
            echo_err(
                f"or-exec: waiting for the sandbox server {self.url} ({exc}); "
                f"retrying for up to {left:.0f} s more (--sandbox-wait / OR_EXEC_SANDBOX_WAIT)"
            )

    async def _call(self, method: str, path: str, timeout: float, **kwargs: Any) -> Any:
        import aiohttp

        self._ensure_session()
        deadline = time.monotonic() + self.retry_seconds
        delay = 0.05
        while True:
            try:
                async with self._session.request(
                    method,
                    f"{self.url}{path}",
                    timeout=aiohttp.ClientTimeout(total=timeout),
                    **kwargs,
                ) as resp:
                    if resp.status == 200:
                        return await resp.json()
                    text = (await resp.text())[:300]
                    if resp.status >= 500 or resp.status == 429:
                        after = _retry_after(resp.headers.get("Retry-After"))
                        raise _Retry(f"the server answered {resp.status}: {text}", after)
                    raise SandboxUnavailable(
                        f"sandbox server {self.url} refused the request ({resp.status}): {text}"
                    )
            except (
                aiohttp.ClientConnectionError,
                aiohttp.ClientPayloadError,
                TimeoutError,
                _Retry,
            ) as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SandboxUnavailable(
                        f"sandbox server {self.url} unreachable for {self.retry_seconds:g} s: {exc!r}"
                    ) from None
                self._say_waiting(exc, left)
                wait = delay * random.uniform(0.5, 1.5)
                if isinstance(exc, _Retry) and exc.after is not None:
                    wait = max(wait, exc.after)  # the server said when to come back
                # the last sleep is cut to the deadline, so it gives up after retry_seconds
                await asyncio.sleep(min(wait, left))
                delay = min(delay * 2, 5.0)

    async def start(self, tiers: object = None) -> dict[str, str]:
        """Connect and return the server's protections (`tiers` is for Pool compatibility)."""
        return (await self._call("GET", "/health", 30))["protections"]

    async def health(self) -> dict[str, Any]:
        """The server's /health: protections, ceilings, workers, queue."""
        return await self._call("GET", "/health", 30)

    async def run(
        self,
        code: str,
        limits: Limits | None = None,
        prelude: Sequence[str] = (),
        *,
        stdin: str | None = None,
        files: Mapping[str, bytes] | None = None,
        fetch: Sequence[str] = (),
    ) -> ExecResult:
        """As Pool.run; the server's ceilings apply (the result's `limits` says what ran)."""
        import base64

        limits = limits or self.limits
        payload: dict[str, Any] = {
            "code": code,
            "prelude": list(prelude),
            "limits": limits.to_dict(),
        }
        if stdin is not None:
            payload["stdin"] = stdin
        if files:
            payload["files"] = {k: base64.b64encode(v).decode() for k, v in files.items()}
        if fetch:
            payload["fetch"] = list(fetch)
        answer = await self._call("POST", "/run", limits.timeout + 60, json=payload)
        return ExecResult.from_dict(answer)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> RemotePool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SyncRemotePool(SyncFace):
    """RemotePool for synchronous callers: its event loop runs in a thread of its own."""

    def __init__(self, url: str, **kwargs: Any):
        super().__init__("or-exec-client")
        self.pool = RemotePool(url, **kwargs)

    def health(self) -> dict[str, Any]:
        return self._call(self.pool.health())
