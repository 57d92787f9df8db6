"""What both views show of a record: its table row, its segments split into prose and fenced
blocks, and the Intervener's rounds (cut point, removed text, hint). Plain dicts, so the HTML
page can embed them as JSON and the terminal view can render the same thing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from or_common.flaws import TRIGGER_NAMES
from or_common.flow import completion_tokens, final_turn
from or_common.records import find_error

from .lint import lint_record

Counter_ = Callable[[str], int]


def parts(text: str, inside: str | None = None) -> tuple[list[dict[str, str]], str | None]:
    """Split a segment's text into prose and fenced blocks: `{"kind": "prose"|"block", "lang",
    "text", "closed"}`. A block opens on a line starting with ``` and closes on a line that is
    only ```. `inside` is the language of a block an earlier segment opened and left open (a
    hint that ends in an opened ```python fence); the language of the block this text leaves
    open, if any, is returned with the parts."""
    out: list[dict[str, str]] = []
    prose: list[str] = []
    block: list[str] | None = [] if inside is not None else None
    lang = inside or ""
    for line in text.splitlines(keepends=True):
        bare = line.strip()
        if block is None and line.lstrip().startswith("```"):
            if prose:
                out.append({"kind": "prose", "lang": "", "text": "".join(prose)})
                prose = []
            block, lang = [], bare[3:].strip()
        elif block is not None and bare == "```":
            out.append({"kind": "block", "lang": lang, "text": "".join(block), "closed": "yes"})
            block = None
        elif block is not None:
            block.append(line)
        else:
            prose.append(line)
    if prose:
        out.append({"kind": "prose", "lang": "", "text": "".join(prose)})
    if block is not None:
        out.append({"kind": "block", "lang": lang, "text": "".join(block), "closed": "no"})
        return out, lang
    return out, None


def trigger_name(trigger: Any) -> str:
    return TRIGGER_NAMES.get(trigger, "") if isinstance(trigger, int) else ""


def _section(record: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def segments(record: Mapping[str, Any], count: Counter_ | None = None) -> list[dict[str, Any]]:
    """The flow, segment by segment, with its parts, its size (tokens with a tokenizer, else
    characters) and, for a hint, the CALM round that inserted it (matched by its text)."""
    rounds = list(_section(record, "calm").get("rounds") or [])
    next_round = 0
    out: list[dict[str, Any]] = []
    inside: str | None = None  # a block left open by the model's previous segment
    for i, seg in enumerate(record.get("flow") or []):
        if not isinstance(seg, dict):
            continue
        text = str(seg.get("text", ""))
        if seg.get("role") == "executor":
            split, _ = parts(text)
        else:
            if inside is not None and out:  # the block the last model segment left open goes on
                last = next(v for v in reversed(out) if v["role"] != "executor")
                last["parts"][-1]["closed"] = "continues"
            continued = inside is not None
            split, inside = parts(text, inside)
            if continued and split:
                split[0]["continued"] = "yes"
        view: dict[str, Any] = {
            "index": i,
            "role": seg.get("role", "?"),
            "chars": len(text),
            "tokens": count(text) if count is not None else None,
            "parts": split,
        }
        for key in ("status", "seconds", "trigger"):
            if key in seg:
                view[key] = seg[key]
        if view["role"] == "intervener":
            view["trigger_name"] = trigger_name(seg.get("trigger"))
            # surviving hints stand in the flow in the order of their rounds
            for k in range(next_round, len(rounds)):
                rd = rounds[k]
                if isinstance(rd, dict) and str(rd.get("hint", "")).strip() == text.strip():
                    view["round"], next_round = k, k + 1
                    break
        out.append(view)
    return out


def calm_rounds(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every round of the Intervener: trigger and its name, where the flow was cut, the text the
    cut removed (`removed`, kept by or-intervene since rounds carry it; None before), the hint."""
    out = []
    for k, rd in enumerate(_section(record, "calm").get("rounds") or []):
        if not isinstance(rd, dict):
            continue
        out.append(
            {
                "round": k,
                "trigger": rd.get("trigger"),
                "trigger_name": trigger_name(rd.get("trigger")),
                "at": rd.get("at"),
                "target": rd.get("target"),
                "removed": rd.get("removed"),
                "hint": rd.get("hint"),
                "analysis": rd.get("analysis"),
            }
        )
    return out


def exec_statuses(record: Mapping[str, Any]) -> dict[str, int]:
    """Executor segments by status, e.g. {"ok": 2, "error": 1}."""
    statuses = Counter(
        str(seg.get("status"))
        for seg in record.get("flow") or []
        if isinstance(seg, dict) and seg.get("role") == "executor"
    )
    return dict(sorted(statuses.items()))


def row(record: Mapping[str, Any], findings: list | None = None) -> dict[str, Any]:
    """The table row of a record: what a user sorts and filters a run by."""
    score, calm, gen = (_section(record, k) for k in ("score", "calm", "gen"))
    flaws = _section(record, "flaws")
    error = find_error(record)
    correct = score.get("correct") if score else calm.get("final", {}).get("correct")
    return {
        "id": str(record.get("id")),
        "benchmark": str(record.get("benchmark") or ""),
        "sample": record.get("sample"),
        "answer": record.get("answer"),
        "correct": correct,
        "prediction": score.get("prediction"),
        "reason": score.get("reason") or (error["type"] if error else None),
        "finish": final_turn(record).get("finish"),
        "executions": exec_statuses(record),
        "flaws": list(flaws.get("triggers") or []),
        "verdict": calm.get("verdict"),
        "rounds": len(calm.get("rounds") or []),
        "tokens": completion_tokens(record),
        "error": f"{error['tool']}: {error['type']}: {error['message']}" if error else None,
        # each code once (`findings`: the record's lint, when the caller has it already)
        "lint": list(
            dict.fromkeys(
                f.code for f in (findings if findings is not None else lint_record(record))
            )
        ),
    }


def failing(view_row: Mapping[str, Any]) -> bool:
    """A record worth keeping beyond the page's cap: wrong, failed, or caught by the lint."""
    return view_row["correct"] is False or bool(view_row["error"]) or bool(view_row["lint"])


def view(record: Mapping[str, Any], count: Counter_ | None = None) -> dict[str, Any]:
    """Everything either view shows of one record."""
    findings = lint_record(record)
    return {
        "row": row(record, findings),
        "question": str(record.get("question") or ""),
        "segments": segments(record, count),
        "rounds": calm_rounds(record),
        "lint": [f.as_dict() for f in findings],
        "score": _section(record, "score"),
        "model": _section(record, "gen").get("model"),
    }
