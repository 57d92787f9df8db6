"""The model clients every tool shares: retries with backoff, and one chat turn from a chat
model (the Intervener, the annotator).

A self-hosted OpenAI-compatible server (`api_base` given: `vllm serve`, SGLang) is called with
the `openai` SDK directly. A hosted provider's model (`gemini/…`, `deepseek/…`, `anthropic/…`,
`openai/…` without a base URL) goes through litellm, imported only then: litellm costs ~4 s of
import and ~50 ms of CPU per request.

Retry policy (`with_retries`): rate limits (429), timeouts (408), conflicts (409), server
errors (5xx), broken connections and unreadable bodies are retried with jittered exponential
backoff, waiting at least what the server's `Retry-After` asks; any other 4xx (bad request,
bad key, unknown model, context too long) is permanent and not retried; anything else (a
TypeError, an AttributeError: a bug) is not an API failure and propagates untouched.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .errors import one_line

log = logging.getLogger("calm_storm.llm")
T = TypeVar("T")

#: litellm routes that are hosted providers (a bare name or an unknown prefix is a served model).
PROVIDERS = frozenset(
    {
        "anthropic",
        "azure",
        "bedrock",
        "cohere",
        "deepseek",
        "fireworks_ai",
        "gemini",
        "groq",
        "mistral",
        "openai",
        "openrouter",
        "together_ai",
        "vertex_ai",
        "xai",
    }
)
MAX_RETRY_AFTER = 120.0  # seconds; a server asking for longer is waited on only this long

#: Exception classes (by name, anywhere in the MRO) that mean the connection or the body broke:
#: the openai SDK's, httpx's, aiohttp's and litellm's spellings.
_TRANSIENT_NAMES = frozenset(
    {
        "APIConnectionError",
        "APITimeoutError",
        "Timeout",
        "TransportError",
        "ClientError",
        "ServerDisconnectedError",
        "RemoteProtocolError",
        "TransientResponseError",
    }
)


class GenerationError(RuntimeError):
    """A request that failed for good (after retries, or not retryable)."""

    def __init__(self, type_: str, message: str):
        super().__init__(f"{type_}: {message}")
        self.type = type_
        self.message = message


class TransientResponseError(RuntimeError):
    """A response that arrived but cannot be used (truncated JSON, no choices): retried."""


def is_provider_model(model: str) -> bool:
    """True for `provider/name` models that go through litellm."""
    return "/" in model and model.split("/", 1)[0] in PROVIDERS


def import_litellm() -> Any:
    """Import litellm only when a hosted provider is used: it is slow to import and, offline, it
    would keep trying to download a price list unless told to use its local copy."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    litellm.drop_params = True  # a provider that lacks a sampling field ignores it
    litellm.turn_off_message_logging = True  # prompts hold problem data: keep them out of logs
    litellm.disable_token_counter = True  # usage comes from the server; counting again costs CPU
    # litellm logs each failure with its traceback through a handler of its own and again through
    # ours; the failed record says the cause in one line, so its loggers speak only with -v
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
        library_log = logging.getLogger(name)
        library_log.handlers.clear()
        library_log.setLevel(logging.CRITICAL if quiet else logging.NOTSET)
    return litellm


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of an API error (openai SDK, litellm, httpx), if it has one."""
    for holder in (exc, getattr(exc, "response", None)):
        code = getattr(holder, "status_code", None)
        if isinstance(code, int):
            return code
    return None


def retryable(exc: BaseException) -> bool:
    """Transient API failures are retried; permanent 4xx and programming errors are not."""
    code = status_code(exc)
    if code is not None:
        return code in (408, 409, 425, 429) or code >= 500
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


def is_api_error(exc: BaseException) -> bool:
    """An error that came from talking to a server (as opposed to a bug in our code)."""
    if retryable(exc) or status_code(exc) is not None:
        return True
    module = type(exc).__module__.split(".", 1)[0]
    return module in ("openai", "litellm", "httpx", "aiohttp")


def retry_after(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (`Retry-After` as seconds or an HTTP date, or
    `retry-after-ms`), capped at MAX_RETRY_AFTER."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return min(float(ms) / 1000, MAX_RETRY_AFTER)
        value = headers.get("retry-after")
    except (AttributeError, TypeError, ValueError):
        return None
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - time.time()
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


async def with_retries(
    attempt: Callable[[int], Awaitable[T]],
    retries: int,
    backoff: float,
    classify: Callable[[BaseException], bool] = retryable,
) -> T:
    """Call `attempt(n)` until it succeeds. Transient failures are retried (jittered
    exponential backoff from `backoff` seconds, at least the server's Retry-After); at the end,
    or at once for a permanent API error, raise GenerationError. Other exceptions (bugs)
    propagate unchanged."""
    for n in range(retries + 1):
        try:
            return await attempt(n)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not is_api_error(exc):
                raise
            if not classify(exc) or n == retries:
                raise GenerationError(
                    type(exc).__name__, f"{_with_cause(exc)[:500]} (after {n + 1} attempts)"
                ) from exc
            delay = min(backoff * 2**n, 30.0) * (0.5 + random.random())
            asked = retry_after(exc)
            if asked is not None:
                delay = max(delay, asked)
            log.info("request failed (%s), retry %d in %.2f s", type(exc).__name__, n + 1, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class OpenAIClients:
    """One `AsyncOpenAI` client per server (its HTTP connection pool), built on first use. The
    SDK's own retries are off: `with_retries` owns the policy."""

    def __init__(self, api_key: str | None, timeout: float):
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = timeout
        self._clients: dict[str, Any] = {}

    def get(self, base: str) -> Any:
        client = self._clients.get(base)
        if client is None:
            from openai import AsyncOpenAI, DefaultAioHttpClient

            try:
                # aiohttp's connection pool: httpx's walks every connection on every request,
                # which at 64 requests in flight cost more CPU than the rest of the request
                http: Any = DefaultAioHttpClient(timeout=self.timeout)
            except RuntimeError:  # the SDK without its aiohttp extra
                http = None
            client = AsyncOpenAI(
                base_url=base,
                api_key=self.api_key,
                max_retries=0,
                timeout=self.timeout,
                http_client=http,
            )
            self._clients[base] = client
        return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


_loop_clients: dict[tuple[int, str | None, float], OpenAIClients] = {}


def _clients_for(api_key: str | None, timeout: float) -> OpenAIClients:
    """Clients shared by the model calls of one event loop (an HTTP pool is bound to its loop)."""
    key = (id(asyncio.get_running_loop()), api_key, timeout)
    clients = _loop_clients.get(key)
    if clients is None:
        if len(_loop_clients) > 16:  # loops of finished runs (tests run many in one process)
            _loop_clients.clear()
        clients = _loop_clients[key] = OpenAIClients(api_key, timeout)
    return clients


def _with_cause(exc: BaseException) -> str:
    """The error's text and, when it says something else, its root cause's: the SDK reports a
    refused connection on its aiohttp transport as "Request timed out.", the cause says why."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text, why = one_line(str(exc), 10_000), one_line(str(root), 10_000)
    return f"{text} ({why})" if root is not exc and why and why not in text else text


async def close_clients() -> None:
    """Close the model clients of the running event loop (their aiohttp sessions complain on
    stderr at exit when left open); call it when a run's last model call is done."""
    loop = id(asyncio.get_running_loop())
    for key in [k for k in _loop_clients if k[0] == loop]:
        await _loop_clients.pop(key).close()


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
    timeout: float = 600.0,
    **sampling: Any,
) -> str:
    """One chat turn from a chat model (Intervener, annotator), with retries. With `api_base`
    (a self-hosted server, which usually wants no key) the openai SDK is called directly and
    `litellm` may be None; otherwise `litellm` (from `import_litellm`) routes the provider's
    model. Raises GenerationError when the turn fails for good."""
    if not api_base and litellm is None:
        raise ValueError(f"{model}: a hosted model needs litellm (import_litellm())")

    async def attempt(_: int) -> str:
        if on_attempt is not None:
            on_attempt()
        if api_base:
            client = _clients_for(api_key, timeout).get(api_base)
            resp = await client.chat.completions.create(
                model=model.removeprefix("openai/"), messages=messages, **sampling
            )
        else:
            kwargs: dict[str, Any] = {"timeout": timeout, "num_retries": 0, **sampling}
            if api_key:
                kwargs["api_key"] = api_key
            resp = await litellm.acompletion(model=model, messages=messages, **kwargs)
        if not resp.choices:
            raise TransientResponseError("the response has no choices")
        return resp.choices[0].message.content or ""

    return await with_retries(attempt, retries, backoff)


__all__ = [
    "GenerationError",
    "OpenAIClients",
    "TransientResponseError",
    "chat_answer",
    "close_clients",
    "import_litellm",
    "is_provider_model",
    "retry_after",
    "retryable",
    "with_retries",
]
