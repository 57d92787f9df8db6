"""OpenAI-compatible servers (`vllm serve`, SGLang) through the `openai` SDK, and hosted
providers (`--model gemini/…`, `deepseek/…`) through litellm, imported only for them.

Completion mode (default) sends the sequence so far as token ids to `/v1/completions` and asks
for the generated ids back (vLLM ≥ 0.10: `return_token_ids`, answered in `choices[0].token_ids`
and `prompt_token_ids`), so the continuation is the exact sequence the model produced. A server
that refuses token-id prompts (a 400/422 on the first one) gets the same sequence as text from
then on; a server that gives no ids back has its text re-tokenized by the loop. Both are found
out once, on the first answer, and logged.

Chat mode (`--chat`) is for APIs without a completions endpoint: each execution output becomes a
user turn and the model answers in a new assistant turn; the flow records the same segments, but
the model saw turn boundaries, so no single token sequence is what it produced.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import orjson
from or_common.llm import (
    OpenAIClients,
    TransientResponseError,
    import_litellm,
    is_provider_model,
    status_code,
    with_retries,
)

from .engine import ENGINE_DEAD_MESSAGE, STOPS, Completion, EngineDied, Request, Sampling

log = logging.getLogger("or_gen")


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        model: str,
        api_bases: Sequence[str],
        *,
        api_key: str | None = None,
        chat: bool = False,
        retries: int = 5,
        backoff: float = 1.0,
        request_timeout: float = 600.0,
    ):
        self.model = model
        self.provider = is_provider_model(model) and not api_bases
        if not api_bases and not self.provider:
            raise ValueError(
                f"--model {model}: give --api-base URL (a served model), or a provider/name "
                "model such as gemini/gemini-2.5-pro"
            )
        self.api_bases = list(api_bases)
        self.chat = chat
        self.retries = retries
        self.backoff = backoff
        self.request_timeout = request_timeout
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.clients = OpenAIClients(self.api_key, request_timeout)
        self.litellm = import_litellm() if self.provider else None
        self.token_prompts = not (chat or self.provider)  # send ids until a server refuses them
        self.returns_ids = self.token_prompts  # until a server answers without ids
        self.requests = 0

    async def _completion(
        self, base: str, request: Request, max_tokens: int, sampling: Sampling, seed: int | None
    ) -> Completion:
        # every field but model and prompt goes in extra_body, which the SDK sends as is: its
        # typed parameters are walked against their annotations (~1 ms of CPU per request)
        extra: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(STOPS),
            "include_stop_str_in_output": True,
            "skip_special_tokens": False,  # byte-exact text, `</think>` and all
            **sampling.extra,
        }
        if seed is not None:
            extra["seed"] = seed
        if self.token_prompts:
            extra["return_token_ids"] = True
        kwargs: dict[str, Any] = {"model": self.model, "extra_body": extra}
        create = self.clients.get(base).completions.with_raw_response.create
        if self.token_prompts and request.ids is not None:
            try:
                # the ids go in extra_body: the SDK sends it as is, where it would walk a
                # `prompt` list element by element (~10 ms of CPU for a few hundred ids)
                raw = await create(
                    prompt="", **{**kwargs, "extra_body": {**extra, "prompt": request.ids}}
                )
            except Exception as exc:
                if status_code(exc) not in (400, 422):
                    raise
                # a server without token-id prompts: switch to text for the rest of the run
                extra.pop("return_token_ids", None)
                raw = await create(prompt=request.text, **kwargs)
                if self.token_prompts:
                    log.warning("%s takes no token-id prompts (%s); sending text", base, exc)
                self.token_prompts = False
                self.returns_ids = False
        else:
            raw = await create(prompt=request.text, **kwargs)
        return self._parse(base, raw.http_response.content)

    def _parse(self, base: str, body: bytes) -> Completion:
        """The completion from the raw JSON body (orjson: the SDK's pydantic models cost more
        CPU than the request itself); an unreadable body is a transient failure."""
        try:
            data = orjson.loads(body)
            choice = data["choices"][0]
            text = choice.get("text") or ""
        except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise TransientResponseError(f"unusable response body ({exc})") from None
        ids = choice.get("token_ids")
        if ids is None and self.returns_ids:
            log.warning("%s returns no token ids; the loop re-tokenizes its text", base)
            self.returns_ids = False
        usage = data.get("usage") or {}
        return Completion(
            text,
            str(choice.get("finish_reason") or "stop"),
            ids,
            int(usage.get("completion_tokens") or (len(ids) if ids else 0)),
            choice.get("prompt_token_ids"),
        )

    async def _chat(
        self, base: str, request: Request, max_tokens: int, sampling: Sampling, seed: int | None
    ) -> Completion:
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(STOPS),
            "extra_body": {"include_stop_str_in_output": True, **sampling.extra},
        }
        if seed is not None:
            kwargs["seed"] = seed
        resp = await self.clients.get(base).chat.completions.create(
            model=self.model, messages=request.messages, **kwargs
        )
        if not resp.choices:
            raise TransientResponseError("the response has no choices")
        choice = resp.choices[0]
        usage = getattr(resp, "usage", None)
        return Completion(
            choice.message.content or "",
            str(choice.finish_reason or "stop"),
            None,
            int(getattr(usage, "completion_tokens", None) or 0),
        )

    async def _provider(
        self, request: Request, max_tokens: int, sampling: Sampling, seed: int | None
    ) -> Completion:
        assert self.litellm is not None
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": list(STOPS),
            "timeout": self.request_timeout,
            "num_retries": 0,
            **sampling.extra,
        }
        if seed is not None:
            kwargs["seed"] = seed
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.chat:
            resp = await self.litellm.acompletion(messages=request.messages, **kwargs)
            text = resp.choices[0].message.content or ""
        else:
            resp = await self.litellm.atext_completion(prompt=request.text, **kwargs)
            text = resp.choices[0].text or ""
        usage = getattr(resp, "usage", None)
        return Completion(
            text,
            str(resp.choices[0].finish_reason or "stop"),
            None,
            int(getattr(usage, "completion_tokens", None) or 0),
        )

    async def complete(
        self, request: Request, *, max_tokens: int, sampling: Sampling, seed: int | None, route: int
    ) -> Completion:
        """One request with retries; the server is chosen by `route` (sticky per trajectory, so
        a server's prefix cache is reused) and moves to the next server on a retry."""

        async def attempt(n: int) -> Completion:
            self.requests += 1
            if self.provider:
                return await self._provider(request, max_tokens, sampling, seed)
            base = self.api_bases[(route + n) % len(self.api_bases)]
            try:
                if self.chat:
                    return await self._chat(base, request, max_tokens, sampling, seed)
                return await self._completion(base, request, max_tokens, sampling, seed)
            except Exception as exc:
                if ENGINE_DEAD_MESSAGE not in str(exc):
                    raise
                # vLLM's engine core died: the server shuts down, no retry can succeed
                raise EngineDied(
                    f"the vLLM engine behind {base} died ({str(exc)[:300]}); see the server's "
                    "log, and restart it"
                ) from None

        return await with_retries(attempt, self.retries, self.backoff)

    async def close(self) -> None:
        await self.clients.close()
        if self.litellm is not None:
            try:
                from litellm.llms.custom_httpx.async_client_cleanup import (
                    close_litellm_async_clients,
                )
            except ImportError:  # an older litellm without the helper
                return
            await close_litellm_async_clients()
