"""The problem text of a record, wherever another tool keeps it.

Tools that compare problem texts (or-filter's decontamination, or-score's label audit) read it
from `--text-key KEY`, or by default from `question`, then the last user message of chat
`messages`. A record without it is an error the caller reports with its `FILE:LINE`: a text
that is silently missing would make every comparison pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .records import RecordError

DEFAULT_TEXT_KEYS = "'question', then the last user message of 'messages'"


def _last_user(messages: Any) -> str | None:
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            return content if isinstance(content, str) else None
    return None


def problem_text(record: Mapping[str, Any], key: str | None = None) -> str:
    """The problem text under `key` (a string, or chat messages whose last user turn is the
    problem), or by default under 'question', then in `messages`. Raises RecordError naming
    where it looked."""
    if key is not None:
        value = record.get(key)
        text = value if isinstance(value, str) else _last_user(value)
        if text is None or not text.strip():
            raise RecordError(f"no problem text under --text-key {key!r}")
        return text
    question = record.get("question")
    if isinstance(question, str) and question.strip():
        return question
    text = _last_user(record.get("messages"))
    if text is None or not text.strip():
        raise RecordError(
            f"no problem text: expected {DEFAULT_TEXT_KEYS} (or name the key with --text-key)"
        )
    return text


def reference_texts(
    path: str, text_key: str | None, flag: str
) -> Iterator[tuple[dict[str, Any], str]]:
    """(record, problem text) for each line of a reference file named by the option `flag`
    (or-filter's --decontaminate, or-score audit's --versions): a line that is not a record or
    holds no problem text is a usage error at its FILE:LINE. The caller says what a file with
    no record means."""
    from .jsonl import BadLine, read_lines
    from .usage import UsageLine

    for item in read_lines([path]):
        if isinstance(item, BadLine):
            raise UsageLine(f"{flag} {item.source}:{item.lineno}: {item.message}")
        try:
            text = problem_text(item.record, text_key)
        except RecordError as err:
            raise UsageLine(f"{flag} {item.where()}: {err}") from None
        yield item.record, text
