"""`or-exec serve`: one sandbox pool shared over HTTP/JSON, in two dialects.

POST /run           ours: {"code", "prelude", "limits", "stdin", "files", "fetch"} -> a result
POST /run_code      SandboxFusion's (what verl's sandbox reward and tool call): fusion.py
GET  /health        protections, ceilings, workers, queue (no token needed)
GET  /stats         jobs by status and tier, respawns, workers
GET  /openapi.json  the OpenAPI 3 document of all of the above (openapi.py; no token needed)

The server's limits are ceilings: a client may ask for less, never for more, and every answer
says what the job ran under. With a token (`--token` / OR_EXEC_TOKEN), /run, /run_code and
/stats want `Authorization: Bearer <token>` (or `?token=<token>` in the URL, for clients such
as verl's that send no headers). A connection must finish its request's headers
within HEADER_TIMEOUT and its body within BODY_TIMEOUT; beyond MAX_CONNECTIONS open
connections a new one gets a 503 at once; beyond the workers plus `max_queue` requests in
flight, a request gets a 503 with Retry-After. A request whose client went away is cancelled,
and its job killed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

import orjson
from or_common.usage import echo_err

from . import fusion
from .client import RemotePool, SandboxUnavailable, SyncRemotePool  # noqa: F401 - re-exported
from .limits import Limits
from .pool import Pool

RUN_FIELDS = ("code", "prelude", "limits", "stdin", "files", "fetch")
HEADER_TIMEOUT = 10.0  # seconds for a connection to send its next request's headers
BODY_TIMEOUT = 30.0  # seconds for a request's body
MAX_CONNECTIONS = 512
_REFUSED_BODY = b'{"error": "too many connections: the server is at its cap"}'
REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\n"
    + f"Content-Length: {len(_REFUSED_BODY)}\r\n\r\n".encode()
    + _REFUSED_BODY
)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate ("\\ud800") cannot be a program
        raise ValueError(f"{what} is not valid unicode: {exc.reason}") from None
    return value


def parse_run(data: bytes, ceilings: Limits) -> tuple[str, list[str], Limits, dict[str, Any]]:
    """Validate a POST /run body: (code, prelude, limits, extra: stdin/files/fetch as Pool.run's
    keywords). Raises ValueError (-> 400) for anything malformed; the server's own limits are
    ceilings for the client's."""
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - set(RUN_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; the fields are {list(RUN_FIELDS)}")
    if "code" not in body:
        raise ValueError("missing field: code")
    code = _text(body["code"], "code")
    prelude = body.get("prelude") or []
    if not isinstance(prelude, list):
        raise ValueError("prelude must be a list of strings")
    prelude = [_text(block, "each prelude block") for block in prelude]
    # stdin, files and fetch have SandboxFusion's shapes: one validator for both dialects
    extra = fusion.parse_request(
        {
            "code": code,
            "stdin": body.get("stdin"),
            "files": body.get("files"),
            "fetch_files": body.get("fetch"),
        },
        ceilings,
    )
    kw = {k: extra[k] for k in ("stdin", "files", "fetch") if extra[k]}
    return code, prelude, ceilings.capped(body.get("limits")), kw


def _authorized(request: Any, token: str | None) -> bool:
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    if not given and "token" in request.query:  # clients that send no headers (verl's)
        given = f"Bearer {request.query['token']}"
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def make_app(
    pool: Pool | Any,
    protections: dict[str, str],
    token: str | None = None,
    max_queue: int | None = None,
    idle: Callable[[Any, bool], None] | None = None,
):
    """The aiohttp application. `idle(request, busy)` tells the connection guard when a
    request starts and ends (see `serve`)."""
    from aiohttp import web

    from .openapi import document

    queue_cap = max_queue if max_queue is not None else 4 * pool.workers
    state = {"in_flight": 0}

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if idle is not None:
            idle(request, True)
        try:
            if request.path in ("/run", "/run_code", "/stats") and not _authorized(request, token):
                return web.json_response(
                    {"error": "unauthorized: send Authorization: Bearer <token>"},
                    status=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            if request.method != "POST":
                return await handler(request)
            if state["in_flight"] >= pool.workers + queue_cap:
                return web.json_response(
                    {"error": f"the queue is full ({queue_cap} waiting): retry later"},
                    status=503,
                    headers={"Retry-After": "1"},
                )
            state["in_flight"] += 1
            try:
                return await handler(request)
            finally:
                state["in_flight"] -= 1
        finally:
            if idle is not None:
                idle(request, False)

    async def body(request: web.Request) -> bytes:
        try:
            return await asyncio.wait_for(request.read(), BODY_TIMEOUT)
        except TimeoutError:
            raise web.HTTPRequestTimeout(text="the request body took too long") from None

    async def run(request: web.Request) -> web.Response:
        try:
            code, prelude, limits, kw = parse_run(await body(request), pool.limits)
        except ValueError as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        result = await pool.run(code, limits, prelude, **kw)
        return web.json_response({**result.to_dict(), "limits": limits.to_dict()})

    async def run_code(request: web.Request) -> web.Response:
        try:
            raw = orjson.loads(await body(request))
            req = fusion.parse_request(raw, pool.limits)
        except (ValueError, orjson.JSONDecodeError) as exc:
            return web.json_response({"error": f"bad request: {exc}"}, status=400)
        limits = req.pop("limits")
        code = req.pop("code")
        kw = {k: v for k, v in req.items() if v}
        result = await pool.run(code, limits, **kw)
        return web.json_response(fusion.response(result, limits))

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "protections": protections,
                "workers": pool.workers,
                "ceilings": pool.limits.to_dict(),
                "queue": {"max": queue_cap, "in_flight": state["in_flight"]},
                "dialects": ["or-exec (/run)", "SandboxFusion (/run_code)"],
                "auth": "bearer token" if token else "none",
            }
        )

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({**pool.stats, "workers": pool.workers})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document())

    app = web.Application(client_max_size=40 << 20, middlewares=[guard])
    app.add_routes(
        [
            web.post("/run", run),
            web.post("/run_code", run_code),
            web.get("/health", health),
            web.get("/stats", stats),
            web.get("/openapi.json", openapi),
        ]
    )
    return app


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: a connection over the cap gets a 503 and is closed
    at once; a connection that is not inside a request must send its next request's headers
    within `header_timeout` seconds (slowloris: many connections that never finish theirs)."""

    def __init__(self, factory: Callable[[], Any], cap: int, header_timeout: float):
        self.factory = factory
        self.cap = cap
        self.header_timeout = header_timeout
        self.open: dict[Any, Any] = {}  # transport -> timer handle (None while in a request)

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self.factory(), self)

    def arm(self, transport: Any) -> None:
        loop = asyncio.get_running_loop()
        self.open[transport] = loop.call_later(self.header_timeout, transport.close)

    def idle(self, request: Any, busy: bool) -> None:
        transport = request.transport
        if transport is None or transport not in self.open:
            return
        timer = self.open[transport]
        if timer is not None:
            timer.cancel()
            self.open[transport] = None
        if not busy and not transport.is_closing():
            self.arm(transport)


class _Guarded(asyncio.Protocol):
    """One connection: aiohttp's handler behind the guard's cap and header deadline."""

    def __init__(self, inner: Any, guard: ConnectionGuard):
        self.inner = inner
        self.guard = guard
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        if len(self.guard.open) >= self.guard.cap:
            transport.write(REFUSED)
            transport.close()
            return
        self.transport = transport
        self.guard.open[transport] = None
        self.inner.connection_made(transport)
        self.guard.arm(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.transport is None:
            return  # refused at the cap
        timer = self.guard.open.pop(self.transport, None)
        if timer is not None:
            timer.cancel()
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


def _raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 65536 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


async def serve(
    pool: Pool,
    host: str,
    port: int,
    ready: asyncio.Event | None = None,
    token: str | None = None,
    max_queue: int | None = None,
    verbose: bool = False,
) -> None:
    """Bind, say so, start the warm sandbox parents, serve until cancelled."""
    from aiohttp import web

    cap = min(MAX_CONNECTIONS, max(16, _raise_open_files() // 2 - 64))
    protections: dict[str, str] = {}
    guard_box: dict[str, ConnectionGuard] = {}

    def idle(request: Any, busy: bool) -> None:
        if "guard" in guard_box:
            guard_box["guard"].idle(request, busy)

    app = make_app(pool, protections, token, max_queue, idle)
    access = logging.getLogger("or_exec.access")
    if verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    runner = web.AppRunner(
        app,
        access_log=access if verbose else None,
        handler_cancellation=True,  # a client that went away cancels its request (and job)
        keepalive_timeout=HEADER_TIMEOUT,
    )
    server = None
    try:
        await runner.setup()
        assert runner.server is not None  # setup() made it
        guard = ConnectionGuard(runner.server, cap, HEADER_TIMEOUT)
        guard_box["guard"] = guard
        loop = asyncio.get_running_loop()
        server = await loop.create_server(guard, host, port, backlog=1024)  # OSError: taken
        echo_err(
            f"or-exec: listening on http://{host}:{port} ({pool.workers} workers; "
            f"{'token required' if token else 'no token'}); starting the sandbox parents…"
        )
        started = time.monotonic()
        # the tiers most jobs use now; the solver tiers start on their first job
        eager = [t for t in ("python", "pulp") if t in pool.tiers] or None
        protections.update(await pool.start(eager))
        echo_err(f"or-exec: ready in {time.monotonic() - started:.1f} s")
        if ready is not None:
            ready.set()
        await asyncio.Event().wait()
    finally:
        if server is not None:
            server.close()
        await runner.cleanup()
        await pool.close()
