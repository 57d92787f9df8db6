"""The model annotator: a litellm model answering `<triggers>…</triggers>`."""

from __future__ import annotations

from typing import Any

from or_common.llm import GenerationError, chat_answer, import_litellm
from or_common.records import set_error

from .annotate import PROMPT_VERSION, flaws_section, parse_triggers, render_prompt

REASK = "Your answer could not be used. Reply with only <triggers>N;M</triggers> (numbers 1 to 7) or <triggers>correct</triggers>."


class ModelAnnotator:
    def __init__(self, model: str, opts: dict[str, Any]):
        # a self-hosted server (--api-base) is called with the openai SDK; litellm only for providers
        self.litellm = None if opts.get("api_base") else import_litellm()
        self.model = model
        self.opts = opts

    async def _ask(self, messages: list[dict[str, str]]) -> str:
        o = self.opts
        return await chat_answer(
            self.litellm,
            self.model,
            messages,
            api_base=o["api_base"],
            api_key=o["api_key"],
            retries=o["retries"],
            backoff=o["retry_backoff"],
            temperature=o["temperature"],
        )

    async def annotate(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record with `flaws`; a failure leaves an error under `flaws`."""
        messages = [{"role": "user", "content": render_prompt(record)}]
        try:
            for _ in range(self.opts["reask"] + 1):
                answer = await self._ask(messages)
                triggers = parse_triggers(answer)
                if triggers is not None:
                    record["flaws"] = flaws_section(triggers, self.model, PROMPT_VERSION)
                    return record
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
            record["flaws"] = {}
            set_error(record, "or-annotate", err.type, err.message)
            record["flaws"]["annotator"] = self.model
            return record
