"""The lint: shapes of a trajectory that no tool should have let through.

Each check reads the flow only (the model's own text, the hints and the sandbox's output blocks as
segments) and returns findings with a short code, so a page can filter on them and `--check` can
print them one per line. What is checked:

- `think-twice`: the turn closes its thinking (`</think>`) more than once;
- `hint-after-answer` / `output-after-answer`: an Intervener hint or an executor output block
  comes after the thinking was closed, i.e. inside the answer the user sees;
- `unclosed-block`: the model's text ends inside a fenced block;
- `fake-output`: an ```` ```output ```` block the sandbox did not write (in a reasoner or
  intervener segment);
- `several-boxes`: the visible answer holds more than one `\\boxed{}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from or_common.answers import THINK_END, answer_region, extract_boxed_all
from or_common.turn import ends_inside_fence, has_output_opening

#: code -> what it means, in the order the checks run (also the legend of the HTML page)
RULES: dict[str, str] = {
    "think-twice": "the visible answer closes the thinking more than once",
    "hint-after-answer": "an Intervener hint after the thinking was closed",
    "output-after-answer": "an executor output block after the thinking was closed",
    "unclosed-block": "the model's text ends inside a fenced block",
    "fake-output": "an output block the sandbox did not write",
    "several-boxes": "several \\boxed{} in the visible answer",
}


@dataclass(frozen=True)
class Finding:
    code: str
    message: str
    segment: int | None = None  # index in the flow, when one segment is to blame

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "segment": self.segment}


def lint_flow(flow: Sequence[Mapping[str, Any]]) -> list[Finding]:
    """Every finding of the checks above for one flow, in flow order within each check."""
    findings: list[Finding] = []
    texts = [str(seg.get("text", "")) for seg in flow]
    roles = [seg.get("role") for seg in flow]
    model = "".join(t for t, r in zip(texts, roles, strict=True) if r != "executor")

    closes = model.count(THINK_END)
    if closes > 1:
        findings.append(Finding("think-twice", f"`</think>` appears {closes} times"))

    # where the model first closed its thinking, in flow offsets
    pos, first_close = 0, None
    for text, role in zip(texts, roles, strict=True):
        at = text.find(THINK_END) if role != "executor" else -1  # a program may print anything
        if at >= 0:
            first_close = pos + at
            break
        pos += len(text)
    if first_close is not None:
        pos = 0
        for i, (text, role) in enumerate(zip(texts, roles, strict=True)):
            if pos >= first_close and role in ("intervener", "executor"):
                code = "hint-after-answer" if role == "intervener" else "output-after-answer"
                what = "hint" if role == "intervener" else "output block"
                findings.append(
                    Finding(code, f"segment {i} ({what}) follows the closed thinking", i)
                )
            pos += len(text)

    if ends_inside_fence(model):
        findings.append(Finding("unclosed-block", "the model's text ends inside a fenced block"))

    for i, (text, role) in enumerate(zip(texts, roles, strict=True)):
        if role != "executor" and has_output_opening(text):
            findings.append(
                Finding("fake-output", f"segment {i} ({role}) writes its own output block", i)
            )

    boxes = extract_boxed_all(answer_region(model))
    if len(boxes) > 1:
        shown = ", ".join(b[:20] for b in boxes[:4])
        findings.append(
            Finding("several-boxes", f"{len(boxes)} boxes in the visible answer: {shown}")
        )
    return findings


def lint_record(record: Mapping[str, Any]) -> list[Finding]:
    """The lint of a record's flow; a record without a flow (a problem) has nothing to lint."""
    flow = record.get("flow")
    if not isinstance(flow, list):
        return []
    return lint_flow([seg for seg in flow if isinstance(seg, Mapping)])
