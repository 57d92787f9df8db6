"""The model annotator: a litellm model answering `<triggers>…</triggers>`."""

from __future__ import annotations

from typing import Any

from or_gen.openai_engine import GenerationError, import_litellm, with_retries

from .annotate import PROMPT_VERSION, flaws_section, parse_triggers, render_prompt

REASK = "Your answer could not be used. Reply with only <triggers>N;M</triggers> (numbers 1 to 7) or <triggers>correct</triggers>."


class ModelAnnotator:
    def __init__(self, model: str, opts: dict[str, Any]):
        self.litellm = import_litellm()
        self.model = model
        self.opts = opts

    async def _ask(self, messages: list[dict[str, str]]) -> str:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": self.opts["temperature"],
            "num_retries": 0,
        }
        if self.opts["api_base"]:
            kwargs["api_base"] = self.opts["api_base"]
        if self.opts["api_key"] or self.opts["api_base"]:
            kwargs["api_key"] = self.opts["api_key"] or "EMPTY"

        async def attempt(_: int) -> str:
            resp = await self.litellm.acompletion(**kwargs)
            return resp.choices[0].message.content or ""

        return await with_retries(
            attempt, self.litellm, self.opts["retries"], self.opts["retry_backoff"]
        )

    async def annotate(self, record: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """(record with `flaws`, failed?). A failure leaves an error under `flaws`."""
        messages = [{"role": "user", "content": render_prompt(record)}]
        try:
            for _ in range(self.opts["reask"] + 1):
                answer = await self._ask(messages)
                triggers = parse_triggers(answer)
                if triggers is not None:
                    record["flaws"] = flaws_section(triggers, self.model, PROMPT_VERSION)
                    return record, False
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": REASK},
                ]
            raise GenerationError(
                "MalformedAnnotation",
                f"no usable <triggers> after {self.opts['reask'] + 1} answers",
            )
        except GenerationError as err:
            record["flaws"] = {
                "error": {"tool": "or-annotate", "type": err.type, "message": err.message},
                "annotator": self.model,
            }
            return record, True
