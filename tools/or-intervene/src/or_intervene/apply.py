"""Parse an Intervener's tagged answer, find its target in the flow, and cut the flow there."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ACTIONS = ("REPLACE_AND_CONTINUE", "NO_INTERVENTION")


class Malformed(ValueError):
    """The answer cannot be used (bad tags, unknown trigger, target not found, ...)."""


@dataclass
class Intervention:
    action: str
    trigger: int | None = None
    analysis: str = ""
    target: str = ""
    hint: str = ""


def _tag(text: str, name: str) -> str | None:
    """The text between the first `<name>` and the first `</name>` after it, or to the end of
    `text` when it is never closed. Found in two searches: a lazy `<name>(.*?)</name>` regex
    rescans the rest of the text from every unclosed opening."""
    opening = re.search(rf"<\s*{name}\s*>", text, re.IGNORECASE)
    if opening is None:
        return None
    closing = re.compile(rf"<\s*/\s*{name}\s*>", re.IGNORECASE).search(text, opening.end())
    return text[opening.end() : closing.start() if closing else len(text)]


def parse_intervention(text: str) -> Intervention:
    """Lenient: any case, spaces in tags, surrounding prose or code fences, "Trigger 5"."""
    text = text or ""  # tags are found wherever they are: prose or code fences around them are fine
    action_raw = _tag(text, "action")
    if action_raw is None:
        if re.search(r"\bNO[_ ]INTERVENTION\b", text, re.IGNORECASE):
            return Intervention("NO_INTERVENTION")
        raise Malformed("no <action> tag")
    action = re.sub(r"[\s\-]+", "_", action_raw.strip().upper().strip("`*. "))
    if action not in ACTIONS:
        raise Malformed(f"unknown action {action_raw.strip()!r}")
    if action == "NO_INTERVENTION":
        return Intervention(action)
    trigger_raw = _tag(text, "trigger") or ""
    m = re.search(r"\d+", trigger_raw)
    if not m or not 1 <= int(m.group()) <= 7:
        raise Malformed(f"trigger must be a number from 1 to 7, got {trigger_raw.strip()!r}")
    target = _tag(text, "target")
    hint = _tag(text, "hint")
    if not target or not target.strip():
        raise Malformed("empty <target>")
    if not hint or not hint.strip():
        raise Malformed("empty <hint>")
    return Intervention(
        action,
        int(m.group()),
        (_tag(text, "analysis") or "").strip(),
        target.strip("\n"),
        hint.strip("\n"),
    )


def _normalised(text: str) -> tuple[str, list[int]]:
    """Whitespace removed, with a map from each kept character to its original index."""
    kept, index = [], []
    for i, c in enumerate(text):
        if not c.isspace():
            kept.append(c)
            index.append(i)
    return "".join(kept), index


def locate(flow: list[dict[str, Any]], target: str) -> int:
    """Character offset in the flow text where `target` begins: exact match first, then
    whitespace-insensitive. Occurrences inside executor segments do not count (a cut never
    falls inside sandbox output); raises Malformed when there is no other."""
    text = "".join(s["text"] for s in flow)
    spans, pos = [], 0
    for seg in flow:
        spans.append((pos, pos + len(seg["text"]), seg.get("role")))
        pos += len(seg["text"])

    def allowed(offset: int) -> bool:
        return next((role for a, b, role in spans if a <= offset < b), None) not in (
            "executor",
            None,
        )

    for candidate in (target, target.strip()):
        start = text.find(candidate)
        while start >= 0:
            if allowed(start):
                return start
            start = text.find(candidate, start + 1)
    squeezed, index = _normalised(text)
    needle, _ = _normalised(target)
    if needle:
        start = squeezed.find(needle)
        while start >= 0:
            if allowed(index[start]):
                return index[start]
            start = squeezed.find(needle, start + 1)
    if text.find(target.strip()) >= 0 or (needle and squeezed.find(needle) >= 0):
        raise Malformed("the target is inside an output block; name text the student wrote")
    raise Malformed("the target text does not occur in the trajectory")


def cut_and_hint(
    flow: list[dict[str, Any]], offset: int, hint: str, trigger: int | None
) -> list[dict[str, Any]]:
    """The flow up to `offset`, then the hint as an intervener segment. A separator newline is
    added when the cut is mid-line; it belongs to the intervener segment (its text is exactly
    what was inserted)."""
    kept: list[dict[str, Any]] = []
    pos = 0
    for seg in flow:
        end = pos + len(seg["text"])
        if end <= offset:
            kept.append(dict(seg))
        elif pos < offset:
            kept.append({**seg, "text": seg["text"][: offset - pos]})
        pos = end
    before = "".join(s["text"] for s in kept)
    text = hint if (not before or before.endswith("\n")) else "\n" + hint
    if not text.endswith("\n"):
        text += "\n"  # the Reasoner continues on a fresh line (inside the fence for triggers 1-2)
    segment: dict[str, Any] = {"role": "intervener", "text": text}
    if trigger is not None:
        segment["trigger"] = trigger
    kept.append(segment)
    return kept
