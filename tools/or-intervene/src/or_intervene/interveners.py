"""Interveners: `rules` (deterministic detectors), a model (or_common.llm), and `hybrid`."""

from __future__ import annotations

from typing import Any

from or_common.flaws import detect
from or_common.llm import GenerationError, chat_answer, import_litellm
from or_common.records import flow_text

from .apply import Intervention, Malformed, locate, parse_intervention
from .defaults import INTERVENER_DEFAULTS
from .prompt import PROMPT_VERSION, REASK_NOTE, render_intervener_prompt

NO = Intervention("NO_INTERVENTION")


class RulesIntervener:
    """The first finding of the shared detectors, cut exactly where it was found."""

    name = "rules"
    prompt_version = "rules-v1"
    calls = 0

    async def review(
        self, record: dict[str, Any], flow: list[dict[str, Any]]
    ) -> tuple[Intervention, int | None]:
        findings = detect(record, flow)
        if not findings:
            return NO, None
        f = findings[0]
        return Intervention(
            "REPLACE_AND_CONTINUE", f.trigger, f.evidence, f.target, f.hint
        ), f.position


class ModelIntervener:
    """A model that answers in the tagged format; malformed answers and targets that cannot be
    found are re-asked with a short note, at most `reask` times."""

    prompt_version = PROMPT_VERSION

    def __init__(
        self,
        model: str,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float = INTERVENER_DEFAULTS.temperature,
        top_p: float = INTERVENER_DEFAULTS.top_p,
        retries: int = 5,
        backoff: float = 1.0,
        reask: int = INTERVENER_DEFAULTS.reask,
        timeout: float = 600.0,
    ):
        # a self-hosted model (api_base) is called with the openai SDK; litellm only for providers
        self.litellm = None if api_base else import_litellm()
        self.name = model
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self.temperature = temperature
        self.top_p = top_p
        self.retries = retries
        self.backoff = backoff
        self.reask = reask
        self.timeout = timeout
        self.calls = 0

    async def _ask(self, messages: list[dict[str, str]]) -> str:
        def count() -> None:
            self.calls += 1

        return await chat_answer(
            self.litellm,
            self.model,
            messages,
            api_base=self.api_base,
            api_key=self.api_key,
            retries=self.retries,
            backoff=self.backoff,
            on_attempt=count,
            temperature=self.temperature,
            top_p=self.top_p,
            timeout=self.timeout,
        )

    async def review(
        self, record: dict[str, Any], flow: list[dict[str, Any]]
    ) -> tuple[Intervention, int | None]:
        messages = [{"role": "user", "content": render_intervener_prompt(record, flow_text(flow))}]
        reason = ""
        for _ in range(self.reask + 1):
            answer = await self._ask(messages)
            try:
                intervention = parse_intervention(answer)
                if intervention.action == "NO_INTERVENTION":
                    return intervention, None
                return intervention, locate(flow, intervention.target)
            except Malformed as exc:
                reason = str(exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": REASK_NOTE.format(reason=reason)},
                ]
        raise GenerationError("MalformedIntervention", f"{reason} (after {self.reask + 1} answers)")


class HybridIntervener:
    """Rules first; the model only where the rules see nothing."""

    def __init__(self, model: ModelIntervener):
        self.rules = RulesIntervener()
        self.model = model
        self.name = f"hybrid:{model.name}"
        self.prompt_version = f"{self.rules.prompt_version}+{model.prompt_version}"

    @property
    def calls(self) -> int:
        return self.model.calls

    async def review(
        self, record: dict[str, Any], flow: list[dict[str, Any]]
    ) -> tuple[Intervention, int | None]:
        intervention, offset = await self.rules.review(record, flow)
        if intervention.action != "NO_INTERVENTION":
            return intervention, offset
        return await self.model.review(record, flow)
