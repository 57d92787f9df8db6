"""Which hosted model a name means, checked before the first record: a chat model (Intervener,
annotator) given without a server URL must be `PROVIDER/MODEL` with a provider litellm knows,
and its credentials must be in the environment. A misspelt or missing provider is one line
naming the known providers, not litellm's traceback on every record."""

from __future__ import annotations

import difflib
import os
from typing import Any

from .llm import PROVIDERS, import_litellm
from .usage import UsageLine

#: The environment variable litellm reads for each common hosted provider's key (checked without
#: importing litellm); other providers are checked with litellm's own `validate_environment`.
PROVIDER_KEYS = {
    "gemini": "GEMINI_API_KEY",
    "openai": "OPENAI_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "xai": "XAI_API_KEY",
    "groq": "GROQ_API_KEY",
}


def litellm_providers(litellm: Any) -> list[str]:
    """litellm's own list of providers (the prefixes it routes)."""
    return sorted(str(getattr(p, "value", p)) for p in litellm.provider_list)


def unknown_provider(model: str, option: str, base_flag: str) -> UsageLine:
    """The one line for a model whose provider litellm does not know (or that names none)."""
    litellm = import_litellm()
    known = litellm_providers(litellm)
    provider = model.split("/", 1)[0] if "/" in model else ""
    name = model.split("/", 1)[1] if "/" in model else model
    if provider:
        close = difflib.get_close_matches(provider, known, n=1)
        guess = f"{close[0]}/{name}" if close else None
        what = f"unknown provider {provider!r}"
    else:
        cost = getattr(litellm, "model_cost", {}) or {}
        guesses = [f"{p}/{name}" for p in sorted(PROVIDERS) if f"{p}/{name}" in cost]
        guess = guesses[0] if guesses else None
        what = "no provider"
    common = ", ".join(sorted(PROVIDERS))
    more = len(set(known) - PROVIDERS)
    return UsageLine(
        f"{option} {model}: {what}"
        + (f" (did you mean {guess}?)" if guess else "")
        + f"; a hosted model is PROVIDER/MODEL with PROVIDER one of {common} "
        f"(or one of litellm's {more} others), or a served one with {base_flag} URL"
    )


def check_api_key(
    model: str,
    api_base: str | None,
    api_key: str | None,
    option: str = "--intervener",
    key_flag: str = "--intervener-api-key",
    base_flag: str = "--intervener-api-base",
) -> None:
    """Fail now, not after retries on every record, when a hosted model cannot be called: a
    provider litellm does not know (or none), or no credentials (neither `api_key` nor the
    provider's environment variables). A model behind `api_base` (a self-hosted endpoint) is
    not checked."""
    if api_base:
        return
    provider = model.split("/", 1)[0] if "/" in model else ""
    name = model.split("/", 1)[1] if "/" in model else ""
    if provider not in PROVIDER_KEYS:
        litellm = import_litellm()
        if not name or provider not in litellm_providers(litellm):
            raise unknown_provider(model, option, base_flag)
        if api_key:
            return
        missing = litellm.validate_environment(model=model).get("missing_keys") or []
        if missing:
            raise UsageLine(
                f"{option} {model}: litellm's check for {provider} finds no "
                f"{', '.join(missing)} in the environment; set them, or pass {key_flag}, "
                f"or point {base_flag} at a self-hosted server"
            )
        return
    variable = PROVIDER_KEYS[provider]
    if not api_key and not os.environ.get(variable):
        raise UsageLine(
            f"{option} {model} needs an API key: set {variable} "
            f"(or pass {key_flag}), or point {base_flag} at a self-hosted server"
        )
