"""A scripted OpenAI-compatible server for tests, run on 127.0.0.1 in a background thread.

It honours `stop` like vLLM (the output ends at the first stop string, which is included only
with `include_stop_str_in_output`) and `max_tokens`, records every request, and can inject
faults: HTTP 429 (optionally with Retry-After), 400/500/503, a hang (client timeout), a
truncated body.

With a `tokenizer` it behaves like vLLM ≥ 0.10 on token ids: a prompt may be a list of ids,
`return_token_ids` answers with `choices[0].token_ids` / `prompt_token_ids`, generation is
emulated token by token (a stop string that ends inside a token keeps that whole token in the
ids, the text ends at the stop string), and a natural end appends the end-of-turn id (and its
text unless `skip_special_tokens`). Without one it is a text-only server: 4 characters per token,
and a token-id prompt is refused with 400. `ignore_stop=True` plays a server that ignores the
stop list.
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

    def __init__(
        self,
        script: Callable[[Any, dict], str],
        latency: float = 0.0,
        tokenizer: Any = None,
        ignore_stop: bool = False,
    ):
        self.script = script
        self.latency = latency
        self.tokenizer = tokenizer
        self.ignore_stop = ignore_stop
        self._memo: dict[tuple, tuple[str, list[int], str]] = {}
        self.requests: list[dict] = []
        self.responses: list[dict] = []  # the choice answered to each successful request
        # consumed one per request: "429", "500", "hang", "truncate", "dead" (vLLM's engine died)
        self.faults: list[str] = []
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
        if fault.split(":")[0] in ("400", "429", "500", "503"):
            code, _, wait = fault.partition(":")  # "429:0.3" asks the client to wait 0.3 s
            return web.json_response(
                {"error": {"message": f"injected {code}", "type": "fault"}},
                status=int(code),
                headers={"Retry-After": wait} if wait else None,
            )
        if fault == "dead":  # what vLLM answers once its engine core died (then it exits)
            message = "EngineCore encountered an issue. See stack trace (above) for the root cause."
            return web.json_response(
                {"error": {"message": message, "type": "InternalServerError"}}, status=500
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

    def prompt_text(self, body: dict) -> str:
        """The prompt of a completions request as text (token ids decoded)."""
        prompt = body["prompt"]
        if isinstance(prompt, list):
            return self.tokenizer.decode(prompt, skip_special_tokens=False)
        return prompt

    def _generate(self, prompt: Any, body: dict) -> tuple[str, str]:
        text = self.script(prompt, body)
        if not self.ignore_stop:
            text, _ = apply_stop(
                text, body.get("stop") or [], bool(body.get("include_stop_str_in_output"))
            )
        limit = int(body.get("max_tokens") or 10**9) * CHARS_PER_TOKEN
        if len(text) > limit:
            return text[:limit], "length"
        return text, "stop"

    def _generate_ids(self, prompt: str, body: dict) -> tuple[str, list[int], str]:
        """vLLM's behaviour on ids: (text, generated ids, finish); memoised, so that a benchmark
        measures its client rather than this server."""
        full = self.script(prompt, body)
        key = (
            full,
            tuple(body.get("stop") or ()),
            bool(body.get("include_stop_str_in_output")),
            body.get("max_tokens"),
            body.get("skip_special_tokens", True),
        )
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = self._emulate(full, body)
        return hit[0], list(hit[1]), hit[2]

    def _emulate(self, full: str, body: dict) -> tuple[str, list[int], str]:
        tok = self.tokenizer
        ids = tok.encode(full, add_special_tokens=False)
        max_tokens = int(body.get("max_tokens") or 10**9)
        stops = [] if self.ignore_stop else body.get("stop") or []
        include = bool(body.get("include_stop_str_in_output"))
        cut, stopped = apply_stop(full, stops, True)
        if stopped:  # the first token whose text reaches past the stop string ends generation
            k = next(k for k in range(1, len(ids) + 1) if len(tok.decode(ids[:k])) >= len(cut))
            if k <= max_tokens:
                kept, _ = apply_stop(full, stops, include)
                return kept, ids[:k], "stop"
        if len(ids) > max_tokens:
            return tok.decode(ids[:max_tokens]), ids[:max_tokens], "length"
        eos = tok.eos_token_id
        end = "" if body.get("skip_special_tokens", True) else tok.decode([eos])
        return full + end, [*ids, eos], "stop"

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        fault = await self._fault(request)
        if fault is not None:
            return fault
        if self.latency:
            await asyncio.sleep(self.latency)
        if isinstance(body["prompt"], list) and self.tokenizer is None:
            return web.json_response(
                {"error": {"message": "prompt must be a string", "type": "BadRequestError"}},
                status=400,
            )
        choice: dict[str, Any] = {"index": 0, "logprobs": None}
        if self.tokenizer is not None:
            prompt = self.prompt_text(body)
            text, ids, finish = self._generate_ids(prompt, body)
            prompt_ids = (
                body["prompt"]
                if isinstance(body["prompt"], list)
                else self.tokenizer.encode(prompt, add_special_tokens=False)
            )
            if body.get("return_token_ids"):
                choice.update(token_ids=ids, prompt_token_ids=prompt_ids)
            usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": len(ids)}
        else:
            text, finish = self._generate(body["prompt"], body)
            usage = {
                "prompt_tokens": len(body["prompt"]) // CHARS_PER_TOKEN,
                "completion_tokens": -(-len(text) // CHARS_PER_TOKEN),
            }
        choice.update(text=text, finish_reason=finish)
        self.responses.append({**choice, "generated_ids": ids if self.tokenizer else None})
        return web.json_response(
            {
                "id": f"cmpl-{len(self.requests)}",
                "object": "text_completion",
                "created": 0,
                "model": body["model"],
                "choices": [choice],
                "usage": {**usage, "total_tokens": sum(usage.values())},
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
