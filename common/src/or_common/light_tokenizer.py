"""A local folder's fast tokenizer without transformers (see `LightTokenizer`); the token layer
(`or_common.tokens`) loads it for tools that only count, encode and decode."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class LightTokenizer:
    """A local folder's fast tokenizer (`tokenizer.json`) and chat template, with the part of the
    Hugging Face interface the token layer uses, loaded without transformers (whose import,
    torch included, costs seconds before a generator's first request). Renders the template
    the way transformers does (a sandboxed jinja2 environment with trim_blocks, lstrip_blocks,
    loopcontrols, a non-escaping `tojson`, `raise_exception`, `strftime_now`, and the special
    tokens as variables); tests check it against transformers token for token."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        config = json.loads((folder / "tokenizer_config.json").read_text())
        template = config.get("chat_template")
        if template is None and (folder / "chat_template.jinja").is_file():
            template = (folder / "chat_template.jinja").read_text()
        if not isinstance(template, str) or config.get("clean_up_tokenization_spaces"):
            from .tokens import TokenizerError

            raise TokenizerError(f"{folder}: needs the full tokenizer")
        self.name_or_path = str(folder)
        self.chat_template = template
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._specials = {
            k: _token_text(config.get(k))
            for k in ("bos_token", "eos_token", "pad_token", "unk_token")
        }
        self._specials["additional_special_tokens"] = config.get("additional_special_tokens", [])
        self.eos_token_id = self.convert_tokens_to_ids(self._specials["eos_token"])
        self.pad_token_id = self.convert_tokens_to_ids(self._specials["pad_token"])
        self._template: Any = None

    def convert_tokens_to_ids(self, token: str | None) -> int | None:
        return None if token is None else self._tok.token_to_id(token)

    def get_added_vocab(self) -> dict[str, int]:
        return {t.content: i for i, t in self._tok.get_added_tokens_decoder().items()}

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def __call__(self, texts: list[str], add_special_tokens: bool = True) -> dict[str, Any]:
        batch = self._tok.encode_batch(texts, add_special_tokens=add_special_tokens)
        return {"input_ids": [e.ids for e in batch]}

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], tokenize: bool = False, **kwargs: Any
    ) -> Any:
        if self._template is None:
            self._template = _compile_template(self.chat_template)
        text = self._template.render(
            messages=list(messages), tools=None, documents=None, **self._specials, **kwargs
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


def _token_text(value: Any) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _compile_template(source: str) -> Any:
    from datetime import datetime

    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(source)
