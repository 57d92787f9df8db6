"""What the generation loop needs from an engine, and the stop convention they all share.

Generation pauses at the closing fence of a code block: the stop string `\\n```\\n`. An engine
returns the text *with* that fence (vLLM's `include_stop_str_in_output`, or appended here when a
server drops it), so the flow stays byte-exact. A model that starts its own ```output block is
stopped there too and the fake opening is dropped: only the sandbox writes output blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

FENCE_STOP = "\n```\n"
FAKE_OUTPUT_STOP = "```output"
STOPS = [FENCE_STOP, FAKE_OUTPUT_STOP]


@dataclass
class Sampling:
    temperature: float = 0.6
    top_p: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)  # passed through (e.g. vLLM's top_k, min_p)


@dataclass
class Completion:
    """One engine call. `finish`: fence (paused at a closing fence), fake_output (the model
    opened an output block itself; dropped), stop (end of turn), length (budget spent)."""

    text: str
    finish: str
    completion_tokens: int
    prompt_tokens: int | None = None
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "finish": self.finish,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens": self.prompt_tokens,
        }


class Engine(Protocol):
    name: str

    async def complete(
        self, prompt: str, *, max_tokens: int, sampling: Sampling, seed: int | None, route: int
    ) -> Completion:
        """Continue `prompt`; `route` picks a server consistently per trajectory (prefix caching)."""
        ...

    async def close(self) -> None: ...


def open_fence(text: str) -> bool:
    """True if `text` ends inside a fenced block (an odd number of line-leading fences)."""
    fences = 0
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            fences += 1
    return fences % 2 == 1


def resolve_stop(text: str, finish: str, context: str) -> tuple[str, str]:
    """Normalise a raw engine result to (text, finish) under the stop convention.

    `context` is the text generated before this call in the same turn (to tell an open fence)."""
    if text.endswith(FENCE_STOP):
        return text, "fence"
    if text.endswith(FAKE_OUTPUT_STOP):
        return text[: -len(FAKE_OUTPUT_STOP)], "fake_output"
    if FAKE_OUTPUT_STOP in text:  # a server that ignored the stop list
        return text[: text.index(FAKE_OUTPUT_STOP)], "fake_output"
    if FENCE_STOP in text:
        return text[: text.index(FENCE_STOP) + len(FENCE_STOP)], "fence"
    if finish == "stop" and open_fence(context + text):
        # a server that honoured the stop but did not include it: put the fence back
        return text + FENCE_STOP, "fence"
    return text, "length" if finish == "length" else "stop"
