"""`or-exec serve`: one pool shared over HTTP/JSON, and the client that talks to it.

POST /run     {"code": "...", "prelude": [...], "limits": {...}}  -> an execution result
GET  /health  {"ok": true, "protections": {...}}
GET  /stats   jobs by status and tier, respawns, workers
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson
from or_common.usage import echo_err

from .limits import ExecResult, Limits
from .pool import Pool


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\\ud800") cannot be a program
        raise ValueError(f"{what} is not valid unicode: {exc.reason}") from None
    return value


def parse_run_request(data: bytes, ceilings: Limits) -> tuple[str, list[str], Limits]:
    """Validate a POST /run body: (code, prelude, limits). Raises ValueError (-> 400) for
    anything malformed; the server's own limits are ceilings for the client's."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"code", "prelude", "limits"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    if "code" not in body:
        raise ValueError("missing field: code")
    code = _text(body["code"], "code")
    prelude = body.get("prelude") or []
    if not isinstance(prelude, list):
        raise ValueError("prelude must be a list of strings")
    prelude = [_text(block, "each prelude block") for block in prelude]
    return code, prelude, ceilings.capped(body.get("limits"))


def make_app(pool: Pool, protections: dict[str, str]):
    from aiohttp import web

    async def run(request: web.Request) -> web.Response:
        try:
            code, prelude, limits = parse_run_request(await request.read(), pool.limits)
        except ValueError as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        result = await pool.run(code, limits, prelude)
        return web.json_response(result.to_dict())

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "protections": protections, "workers": pool.workers})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**pool.stats, "workers": pool.workers})

    app = web.Application(client_max_size=16 << 20)
    app.add_routes([web.post("/run", run), web.get("/health", health), web.get("/stats", stats)])
    return app


async def serve(pool: Pool, host: str, port: int, ready: asyncio.Event | None = None) -> None:
    from aiohttp import web

    protections = await pool.start()
    runner = web.AppRunner(make_app(pool, protections), access_log=None)
    try:
        await runner.setup()
        await web.TCPSite(runner, host, port).start()  # OSError: the port is taken
        echo_err(f"or-exec: serving {pool.workers} workers on http://{host}:{port}")
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await pool.close()


class SandboxUnavailable(RuntimeError):
    """The sandbox server could not run a job: unreachable after retries, or it refused the
    request. An error of the client (callers write an error record), never a job status."""


class _Retry(Exception):
    pass


class RemotePool:
    """The client of `or-exec serve`, with the same `run` as a local Pool.

    Connection errors, timeouts and 5xx answers are retried with exponential backoff (a server
    restart takes seconds); after `retry_seconds` without an answer `run` raises
    SandboxUnavailable. A 4xx answer (a request the server refuses) raises at once."""

    def __init__(
        self,
        url: str,
        limits: Limits | None = None,
        connections: int = 64,
        retry_seconds: float = 120.0,
    ):
        self.url = url.rstrip("/")
        self.limits = limits or Limits()
        self.connections = connections
        self.retry_seconds = retry_seconds
        self._session: Any = None

    def _ensure_session(self) -> None:
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections)
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
                        raise _Retry(f"the server answered {resp.status}: {text}")
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
                # the last sleep is cut to the deadline, so it gives up after retry_seconds, not before
                await asyncio.sleep(min(delay * random.uniform(0.5, 1.5), left))
                delay = min(delay * 2, 5.0)

    async def start(self, tiers: object = None) -> dict[str, str]:
        """Connect and return the server's protections (`tiers` is for Pool compatibility)."""
        return (await self._call("GET", "/health", 30))["protections"]

    async def run(
        self, code: str, limits: Limits | None = None, prelude: Sequence[str] = ()
    ) -> ExecResult:
        limits = limits or self.limits
        payload = {"code": code, "prelude": list(prelude), "limits": limits.to_dict()}
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
