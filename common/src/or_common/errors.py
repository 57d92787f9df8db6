"""Failed records said so a person can read them: the first failure of each cause as one line on
stderr while the run goes on, and the closing summary's failures grouped by cause.

A record a tool wrote with `{tool key: {"error": {"type", "message"}}}` (SPEC's error records) is
a failure; its cause is the error's type and message with the parts that differ from record to
record (numbers, the retry count) left out, so 200 refused connections are one cause, and so are
"context length 33012 > 32768" and "context length 40960 > 32768".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

#: the longest error text shown on one line; the record keeps the whole message
MAX_SHOWN = 300

_TRACEBACK = re.compile(r"\s*Traceback \(most recent call last\):.*", re.S)
_ATTEMPTS = re.compile(r"\s*\(after \d+ attempts?\)\s*$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def one_line(text: str, limit: int = MAX_SHOWN) -> str:
    """`text` on one line: an embedded traceback (litellm puts one inside its messages) cut off,
    whitespace runs made one space, at most `limit` characters."""
    text = " ".join(_TRACEBACK.sub("", str(text)).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def describe(error: Mapping[str, Any]) -> str:
    """`Type: message` of an error object, on one line."""
    type_, message = str(error.get("type") or "Error"), one_line(error.get("message") or "")
    return f"{type_}: {message}" if message else type_


def cause_of(error: Mapping[str, Any]) -> str:
    """What failures of one cause share: the type and the message without numbers or retries."""
    message = _ATTEMPTS.sub("", one_line(error.get("message") or "", 10_000))
    return f"{error.get('type') or 'Error'}: {_NUMBER.sub('N', message)}"


def where_of(record: Mapping[str, Any]) -> str:
    """`id/sample` (or `id`) of a record, for a line about it."""
    rid = record.get("id")
    return f"{rid}/{record['sample']}" if record.get("sample") is not None else str(rid)


class FailureTally:
    """Failures grouped by cause. `add` says the first failure of each cause at once with
    `emit` (every failure with `every`); `lines()` gives the summary's lines, one per cause, the
    most frequent first, each with the text of its first failure."""

    def __init__(self, tool: str, emit: Callable[[str], None], every: bool = False):
        self.tool = tool
        self.emit = emit
        self.every = every
        self.counts: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def add(self, where: str, error: Mapping[str, Any]) -> None:
        cause = cause_of(error)
        n = self.counts.get(cause, 0)
        self.counts[cause] = n + 1
        if n == 0:
            self.first[cause] = describe(error)
        if n == 0 or self.every:
            self.emit(f"{self.tool}: {where} failed: {describe(error)}")

    def add_record(self, record: Mapping[str, Any], key: str) -> bool:
        """Count `record` if it carries an error under `key`; True when it did."""
        section = record.get(key)
        error = section.get("error") if isinstance(section, Mapping) else None
        if not isinstance(error, Mapping):
            return False
        self.add(where_of(record), error)
        return True

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return [f"  {n} × {_ATTEMPTS.sub('', self.first[cause])}" for cause, n in ranked]
