"""A scripted OpenAI-compatible server for tests, run on 127.0.0.1 in a background thread.

It honours `stop` like vLLM (the output ends at the first stop string, which is included only
with `include_stop_str_in_output`) and `max_tokens` (4 characters per token), records every
request, and can inject faults: HTTP 429/500, a hang (client timeout), a truncated body.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

CHARS_PER_TOKEN = 4


def apply_stop(text: str, stops: list[str], include: bool) -> tuple[str, bool]:
    cut = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (cut is None or i < cut[0]):
            cut = (i, s)
    if cut is None:
        return text, False
    i, s = cut
    return text[: i + len(s)] if include else text[:i], True


class FakeServer:
    """`script(prompt_or_messages, body) -> continuation text` decides what the model writes."""

    def __init__(self, script: Callable[[Any, dict], str], latency: float = 0.0):
        self.script = script
        self.latency = latency
        self.requests: list[dict] = []
        self.faults: list[str] = []  # consumed one per request: "429", "500", "hang", "truncate"
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.add_routes(
            [
                web.post("/v1/completions", self._completions),
                web.post("/v1/chat/completions", self._chat),
            ]
        )
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _fault(self, request: web.Request) -> web.StreamResponse | None:
        if not self.faults:
            return None
        fault = self.faults.pop(0)
        if fault in ("429", "500", "503"):
            return web.json_response(
                {"error": {"message": f"injected {fault}", "type": "fault"}}, status=int(fault)
            )
        if fault == "hang":
            await asyncio.sleep(30)
        if fault == "truncate":
            resp = web.StreamResponse(
                status=200, headers={"Content-Type": "application/json", "Content-Length": "400"}
            )
            await resp.prepare(request)
            await resp.write(b'{"id": "x", "object": "text_completion", "choices": [{"text": "par')
            request.transport.close()
            return resp
        return None

    def _generate(self, prompt: Any, body: dict) -> tuple[str, str]:
        text = self.script(prompt, body)
        text, stopped = apply_stop(
            text, body.get("stop") or [], bool(body.get("include_stop_str_in_output"))
        )
        limit = int(body.get("max_tokens") or 10**9) * CHARS_PER_TOKEN
        if len(text) > limit:
            return text[:limit], "length"
        return text, "stop"

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        if self.latency:
            await asyncio.sleep(self.latency)
        text, finish = self._generate(body["prompt"], body)
        return web.json_response(
            {
                "id": f"cmpl-{len(self.requests)}",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
                "usage": {
                    "prompt_tokens": len(body["prompt"]) // CHARS_PER_TOKEN,
                    "completion_tokens": -(-len(text) // CHARS_PER_TOKEN),
                    "total_tokens": 0,
                },
            }
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        text, finish = self._generate(body["messages"], body)
        return web.json_response(
            {
                "id": "chat-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": -(-len(text) // CHARS_PER_TOKEN),
                    "total_tokens": 0,
                },
            }
        )


def dumps(obj: Any) -> str:
    return json.dumps(obj)
