"""Static classification of a finished trajectory into at most two flaw triggers."""

from __future__ import annotations

import re
from typing import Any

from or_common.flaws import CATEGORIES, TRIGGER_NAMES, detect
from or_common.records import TOOL_VERSION, check_trajectory, flow_text

RULES_VERSION = "rules-v1"
PROMPT_VERSION = "annotator-v1"
MAX_TRIGGERS = 2

ANNOTATOR_PROMPT = """You review how a student solved an optimization-modeling problem. The student reasons in text and runs Python inside its reasoning (a ```python block runs when it is closed; its ```output follows).

Classify the trajectory with at most two of these flaw triggers, the most important first:
{triggers}

{truth}Answer with the trigger numbers separated by ";" inside one tag, e.g. <triggers>1;7</triggers>, or <triggers>correct</triggers> if the trajectory has none of these flaws.

## Problem
{question}

## Student trajectory
{trajectory}"""


def flaws_section(triggers: list[int], annotator: str, prompt_version: str) -> dict[str, Any]:
    return {
        "triggers": triggers,
        "label": "flawed" if triggers else "correct",
        "categories": sorted({CATEGORIES[t] for t in triggers}),
        "annotator": annotator,
        "prompt_version": prompt_version,
        "tool_version": TOOL_VERSION,
    }


def rules_triggers(record: dict[str, Any]) -> list[int]:
    """The first (by position) distinct triggers the shared detectors find, at most two."""
    out: list[int] = []
    for finding in detect(record):
        if finding.trigger not in out:
            out.append(finding.trigger)
        if len(out) == MAX_TRIGGERS:
            break
    return out


def annotate_rules(record: dict[str, Any]) -> dict[str, Any]:
    check_trajectory(record)
    record["flaws"] = flaws_section(rules_triggers(record), "rules", RULES_VERSION)
    return record


def render_prompt(record: dict[str, Any]) -> str:
    triggers = "\n".join(f"{n}. {TRIGGER_NAMES[n]} ({CATEGORIES[n]})" for n in range(1, 8))
    truth = (
        f"The correct optimal objective value is {record['answer']}.\n\n"
        if record.get("answer") is not None
        else ""
    )
    return ANNOTATOR_PROMPT.format(
        triggers=triggers,
        truth=truth,
        question=record.get("question", ""),
        trajectory=flow_text(record["flow"]),
    )


_CLOSING = re.compile(r"<\s*/\s*triggers\s*>", re.IGNORECASE)


def parse_triggers(text: str) -> list[int] | None:
    """`<triggers>1;7</triggers>` -> [1, 7]; `correct` -> []; None when unusable."""
    text = text or ""
    # the first opening and the first closing after it, in two searches (a lazy regex over
    # both rescans the rest of the text from every unclosed opening)
    opening = re.search(r"<\s*triggers\s*>", text, re.IGNORECASE)
    closing = opening and _CLOSING.search(text, opening.end())
    if not closing:
        return None
    assert opening is not None  # a closing is only searched for after an opening
    body = text[opening.end() : closing.start()].strip()
    if re.fullmatch(r"(?i)\s*(correct|none)\s*", body):
        return []
    numbers = [int(x) for x in re.findall(r"\d+", body)]
    if not numbers or any(not 1 <= n <= 7 for n in numbers):
        return None
    out: list[int] = []
    for n in numbers:
        if n not in out:
            out.append(n)
    return out[:MAX_TRIGGERS]
