"""What the generation loop needs from an engine.

A request carries the sequence so far in token ids (the prompt from the token layer, then every
id generated or appended since), plus the same sequence as text for servers that only take
text, plus chat messages for chat-only APIs. An engine returns what the model wrote, raw: the
text (with the stop string when it stopped on one), the generated ids verbatim when it has them,
and its finish reason. The loop normalises that through the shared turn rules
(`or_common.turn.cut_completion`), so every engine follows the same stop rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import click
from or_common.reasoner import REASONER_DEFAULTS
from or_common.turn import STOPS

#: What vLLM answers (HTTP 500, then it shuts down) once its engine core has died.
ENGINE_DEAD_MESSAGE = "EngineCore encountered an issue"

__all__ = [
    "ENGINE_DEAD_MESSAGE",
    "STOPS",
    "Completion",
    "Engine",
    "EngineDied",
    "Request",
    "Sampling",
]


class EngineDied(click.ClickException):
    """The inference engine itself died (vLLM's EngineDeadError, in process or behind a
    server): no later request can succeed, so the run stops with this one line (exit 1)
    instead of writing every remaining trajectory as an ordinary error record."""


@dataclass
class Sampling:
    temperature: float = REASONER_DEFAULTS.temperature
    top_p: float = REASONER_DEFAULTS.top_p
    extra: dict[str, Any] = field(default_factory=dict)  # passed through (e.g. vLLM's top_k, min_p)


@dataclass
class Request:
    """The sequence to continue: `ids` (token layer), `text` (the same, as text: the rendered
    prompt plus the flow so far) and, in chat mode, `messages`."""

    ids: list[int] | None
    text: str
    messages: list[dict[str, str]] | None = None


@dataclass
class Completion:
    """One engine call, raw. `finish` is the engine's (stop, length, abort, error, …); `ids`
    the generated ids verbatim (None when the engine gives none back); `prompt_ids` what the
    engine says it was sent, when it says so."""

    text: str
    finish: str
    ids: list[int] | None = None
    completion_tokens: int = 0
    prompt_ids: list[int] | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish": self.finish,
            "ids": self.ids,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], cached: bool = False) -> Completion:
        return cls(
            data["text"],
            data["finish"],
            data.get("ids"),
            int(data.get("completion_tokens") or 0),
            cached=cached,
        )


class Engine(Protocol):
    name: str
    #: whether the engine gives the generated ids back (else the loop re-tokenizes the text)
    returns_ids: bool

    async def complete(
        self, request: Request, *, max_tokens: int, sampling: Sampling, seed: int | None, route: int
    ) -> Completion:
        """Continue `request`; `route` picks a server consistently per trajectory (its prefix
        cache)."""
        ...

    async def close(self) -> None: ...
