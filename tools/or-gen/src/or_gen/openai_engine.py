"""OpenAI-compatible servers (vLLM's `vllm serve`, SGLang, hosted APIs) through litellm.

Completion mode (default) sends the client-rendered prompt plus the flow so far to
`/v1/completions`, so the assistant turn continues byte for byte; chat-continuation of a partial
assistant message is avoided on purpose (Qwen3's template would inject an empty think block).
Chat mode (`--chat`) is for APIs without a completions endpoint: each execution output becomes a
user turn and the model answers in a new assistant turn; the flow still records the same
segments, but the model saw turn boundaries, so the byte-exact prompt property does not hold.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .engine import STOPS, Completion, Sampling, resolve_stop

log = logging.getLogger("or_gen")
T = TypeVar("T")


class GenerationError(RuntimeError):
    """A request that failed for good (after retries, or not retryable)."""

    def __init__(self, type_: str, message: str):
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message


def import_litellm() -> Any:
    """Import litellm only when there is work: it is slow to import and, offline, it would
    keep trying to download a price list unless told to use its local copy."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = (
        True  # a provider that lacks a sampling field ignores it instead of failing
    )
    litellm.turn_off_message_logging = True  # prompts hold problem data: keep them out of logs
    litellm.disable_token_counter = True  # usage comes from the server; counting again costs CPU
    return litellm


def litellm_model(model: str, chat: bool) -> str:
    """Our `--model` to a litellm route: bare names go to an OpenAI-compatible server."""
    if chat:
        return (
            model if "/" in model and model.split("/", 1)[0] in _providers() else f"openai/{model}"
        )
    if model.startswith("openai/"):
        model = model.removeprefix("openai/")
    if model.startswith("text-completion-openai/"):
        return model
    head = model.split("/", 1)[0]
    return model if "/" in model and head in _providers() else f"text-completion-openai/{model}"


def _providers() -> set[str]:
    try:
        import litellm

        return {str(p.value if hasattr(p, "value") else p) for p in litellm.provider_list}
    except Exception:
        return set()


def _retryable(exc: BaseException, litellm: Any) -> bool:
    ex = litellm.exceptions
    permanent = tuple(
        getattr(ex, name)
        for name in (
            "BadRequestError",
            "AuthenticationError",
            "NotFoundError",
            "PermissionDeniedError",
            "ContextWindowExceededError",
            "UnprocessableEntityError",
        )
        if hasattr(ex, name)
    )
    if isinstance(exc, permanent):
        return False
    status = getattr(exc, "status_code", None)
    return status is None or status == 429 or status == 408 or status >= 500


async def with_retries(
    attempt: Callable[[int], Awaitable[T]], litellm: Any, retries: int, backoff: float
) -> T:
    """Call `attempt(n)` until it succeeds; transient failures (429, 5xx, timeouts, broken
    connections or bodies) are retried with jittered exponential backoff, permanent ones (bad
    request, auth, context too long) are not. Raises GenerationError at the end."""
    last: BaseException | None = None
    n = 0
    for n in range(retries + 1):
        try:
            return await attempt(n)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # classified here: retried, or raised as a GenerationError
            last = exc
            if not _retryable(exc, litellm):
                break
            if n < retries:
                delay = min(backoff * 2**n, 30.0) * (0.5 + random.random())
                log.info(
                    "request failed (%s), retry %d in %.2f s", type(exc).__name__, n + 1, delay
                )
                await asyncio.sleep(delay)
    assert last is not None
    raise GenerationError(type(last).__name__, f"{str(last)[:500]} (after {n + 1} attempts)")


async def chat_answer(
    litellm: Any,
    model: str,
    messages: list[dict[str, str]],
    *,
    api_base: str | None,
    api_key: str | None,
    retries: int,
    backoff: float,
    on_attempt: Callable[[], None] | None = None,
    **sampling: Any,
) -> str:
    """One chat turn from a judge model (Intervener, annotator), with retries. A self-hosted
    server (`api_base` given) usually wants no key: a placeholder is sent then."""
    kwargs: dict[str, Any] = {"model": model, "messages": messages, "num_retries": 0, **sampling}
    if api_base:
        kwargs["api_base"] = api_base
    if api_key or api_base:
        kwargs["api_key"] = api_key or "EMPTY"

    async def attempt(_: int) -> str:
        if on_attempt is not None:
            on_attempt()
        resp = await litellm.acompletion(**kwargs)
        return resp.choices[0].message.content or ""

    return await with_retries(attempt, litellm, retries, backoff)


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
        self.litellm = import_litellm()
        self.model = model
        self.route_model = litellm_model(model, chat)
        self.api_bases = list(api_bases) or [None]
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.chat = chat
        self.retries = retries
        self.backoff = backoff
        self.request_timeout = request_timeout
        self.requests = 0
        self._clients: dict[str | None, Any] = {}

    def _client(self, base: str | None) -> Any:
        """One shared OpenAI SDK client per server for litellm's OpenAI routes; without it
        litellm builds a client (and an HTTP session) per request."""
        if not self.route_model.startswith(("text-completion-openai/", "openai/")):
            return None
        if base not in self._clients:
            from openai import AsyncOpenAI

            self._clients[base] = AsyncOpenAI(
                base_url=base, api_key=self.api_key, max_retries=0, timeout=self.request_timeout
            )
        return self._clients[base]

    async def _call(
        self,
        base: str | None,
        prompt: str | list[dict[str, str]],
        max_tokens: int,
        sampling: Sampling,
        seed: int | None,
    ) -> tuple[str, str, int, int | None]:
        common: dict[str, Any] = {
            "model": self.route_model,
            "max_tokens": max_tokens,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "stop": STOPS,
            "timeout": self.request_timeout,
            "num_retries": 0,
            "api_key": self.api_key,
        }
        if base:
            common["api_base"] = base
        client = self._client(base)
        if client is not None:
            common["client"] = client
        if seed is not None:
            common["seed"] = seed
        extra = {"include_stop_str_in_output": True, **sampling.extra}
        common["extra_body"] = extra
        if self.chat:
            resp = await self.litellm.acompletion(messages=prompt, **common)
            choice = resp.choices[0]
            text = choice.message.content or ""
        else:
            resp = await self.litellm.atext_completion(prompt=prompt, **common)
            choice = resp.choices[0]
            text = choice.text or ""
        usage = getattr(resp, "usage", None)
        completion_tokens = getattr(usage, "completion_tokens", None) or 0
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        return text, str(choice.finish_reason or "stop"), int(completion_tokens), prompt_tokens

    async def complete(
        self,
        prompt: str | list[dict[str, str]],
        *,
        max_tokens: int,
        sampling: Sampling,
        seed: int | None,
        route: int,
        context: str = "",
    ) -> Completion:
        """One request with retries; the server is chosen by `route` (sticky per trajectory, so
        a server's prefix cache is reused) and moves to the next server on a retry."""

        async def attempt(n: int) -> tuple[str, str, int, int | None]:
            self.requests += 1
            base = self.api_bases[(route + n) % len(self.api_bases)]
            return await self._call(base, prompt, max_tokens, sampling, seed)

        text, finish, completion_tokens, prompt_tokens = await with_retries(
            attempt, self.litellm, self.retries, self.backoff
        )
        text, finish = resolve_stop(text, finish, context)
        return Completion(text, finish, completion_tokens, prompt_tokens)

    async def close(self) -> None:
        """Close our clients and litellm's cached HTTP sessions (else aiohttp warns at exit)."""
        for client in self._clients.values():
            await client.close()
        try:
            from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients
        except ImportError:  # an older litellm without the helper
            return
        await close_litellm_async_clients()
