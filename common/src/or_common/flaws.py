"""Deterministic flaw detectors over a finished trajectory, for the seven flaw triggers:
premature solving by hand, fragmented code, redundant manual verification, missing sanity
check, flawed modeling, implementation error, protocol violation.

Shared by or-intervene's `rules` Intervener (which cuts at a finding's target and inserts its
hint) and or-annotate's `rules` annotator (which only records the triggers). Each finding
carries its evidence, the exact flow text where the flaw begins (`target`), and a first-person
hint written from a template in our own words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .answers import THINK_END, answer_region, extract_boxed_all, parse_number, parse_truth
from .blocks import PYTHON_OPEN, flow_blocks
from .records import flow_text
from .scoring import compare

TRIGGER_NAMES = {
    1: "premature natural-language solving",
    2: "fragmented coding",
    3: "redundant manual verification",
    4: "missing sanity check",
    5: "flawed reasoning or modeling",
    6: "implementation error",
    7: "protocol violation",
}
CATEGORIES = {
    1: "code-utilization distrust",
    2: "code-utilization distrust",
    3: "code-utilization distrust",
    4: "lack of OR expertise",
    5: "lack of OR expertise",
    6: "lack of OR expertise",
    7: "protocol",
}

# Arithmetic done by hand on one line: "3*20 + 5*10 = 110", "12 × 4 = 48" (the spaces are a
# line's own: an earlier `\s` let a match run across line breaks). The matches are those of
# `_HAND_ARITH_PATTERN`, found by `hand_arithmetic` in one pass (run as a regex, each start
# rescans the rest of its line: quadratic on a long line such as "1+1+…").
_HAND_ARITH_PATTERN = r"-?\d[\d,.]*[^\S\n]*[*×x·+\-/][^\S\n]*-?\d[\d,.]*[^=\n]*=[^\S\n]*-?\$?\d"
_HAND_HEAD = re.compile(r"\d[\d,.]*+[^\S\n]*+[*×x·+\-/][^\S\n]*+-?\d")
_HAND_TAIL = re.compile(r"[^\S\n]*+-?\$?\d")
_NUMBER_RUN = re.compile(r"[\d,.]+")
_SEGMENT_END = re.compile(r"[=\n]")
_SOLVE_CALL = re.compile(r"\.solve\(|linprog\(|milp\(|minimize\(")
_NAME_ERROR = re.compile(r"NameError: name '(\w+)' is not defined")
_BAD_STATUS = re.compile(r"\b(Infeasible|Unbounded|Not Solved|Undefined)\b")
# "name = 1.5" on a line of program output (possessive: no backtracking inside a line; the
# name may keep trailing spaces, callers strip it).
_ASSIGN = re.compile(
    r"^[^\S\n]*+([A-Za-z_][\w\[\]'\", ()]*+)[^\S\n]*+[=:][^\S\n]*+(-?\d+\.\d+)[^\S\n]*+$",
    re.MULTILINE,
)
_COUNT_WORDS = re.compile(
    r"\b(how many|number of|units|workers|trucks|machines|employees|people|items|vehicles|trips|nurses|boxes|batches|servings?)\b",
    re.I,
)
_INTEGER_DECL = re.compile(r"Integer|LpInteger|Binary|integrality|cat\s*=", re.I)

HINTS = {
    7: "Before I answer I should follow the required format: the optimal objective value alone, as one number inside \\boxed{}, without units or words.",
    2: "Each script runs on its own, so a block cannot rely on earlier definitions. I will write one complete, self-contained script with all data, variables, constraints, the solve call and the prints.\n```python\n",
    1: "The model is complete; the reliable next step is to let pulp solve it instead of working it out by hand.\n```python\n",
    3: "The solver already gave the optimum; re-deriving it by hand adds nothing, so I will report its result.",
    5: "The solver gave {detail}, but these quantities must be whole numbers; I need to declare the variables as integers and solve again.\n```python\n",
    6: "The solver reports the model as {detail}, which cannot be right for this problem; I should check each constraint's direction and every bound in the code against the statement.\n```python\n",
    0: "Before answering I should re-read the problem statement and check every number and constraint of my model against it.",
}


@dataclass
class Finding:
    trigger: int
    evidence: str
    target: str  # exact text of the flow where the flaw begins (the cut point)
    position: int  # character offset of `target` in the flow text
    hint: str


def hand_arithmetic(text: str) -> list[tuple[int, int]]:
    """(start, end) of every match of `_HAND_ARITH_PATTERN` in `text`, as `finditer` finds them,
    in one pass. A match cannot cross a line or an "=", so each stretch between two of those is
    looked at once: it holds a match when the "=" that ends it is followed by a number and a
    number, an operator and a number start in it; the leftmost start is the first digit of a
    run of digits, commas and dots (a later digit of the same run matches the same way), or a
    minus sign just before it."""
    found: list[tuple[int, int]] = []
    lo = 0  # where the next match may start: a stretch's start, or the end of the last match
    for boundary in _SEGMENT_END.finditer(text):
        end = boundary.start()
        tail = _HAND_TAIL.match(text, end + 1) if boundary.group() == "=" else None
        if tail is not None:
            for run in _NUMBER_RUN.finditer(text, lo, end):
                # `\d` is a Unicode decimal digit, as str.isdecimal says
                digit = next((k for k in range(*run.span()) if text[k].isdecimal()), None)
                if digit is None or not _HAND_HEAD.match(text, digit, end):
                    continue
                minus = digit == run.start() and digit > lo and text[digit - 1] == "-"
                found.append((digit - minus, tail.end()))
                break
        lo = max(end + 1, found[-1][1] if found else 0)
    return found


def _position_of_line(text: str, line_start: int) -> tuple[int, str]:
    end = text.find("\n", line_start)
    return line_start, text[line_start : end if end >= 0 else len(text)]


def _segments_offsets(flow: Sequence[dict[str, Any]]) -> list[int]:
    offsets, pos = [], 0
    for seg in flow:
        offsets.append(pos)
        pos += len(seg.get("text", ""))
    return offsets


def _not_in_executor(flow: Sequence[dict[str, Any]], position: int) -> bool:
    offsets = _segments_offsets(flow)
    for seg, start in zip(flow, offsets, strict=True):
        if start <= position < start + len(seg.get("text", "")):
            return seg.get("role") != "executor"
    return True


def _finding(
    flow, text: str, trigger: int, position: int, evidence: str, **fmt: str
) -> Finding | None:
    if position < 0 or not _not_in_executor(flow, position):
        return None
    _, line = _position_of_line(text, position)
    target = line if line.strip() else text[position : position + 80]
    return Finding(
        trigger, evidence, target, position, HINTS[trigger].format(**fmt) if fmt else HINTS[trigger]
    )


def _answer_start(text: str) -> int:
    end = text.rfind(THINK_END)
    return end + len(THINK_END) if end >= 0 else max(0, text.rfind("\n\n"))


def bad_answer_format(flow, text: str) -> Finding | None:
    """Trigger 7: the final answer is not a lone number in one \\boxed{}."""
    region = answer_region(text)
    boxes = extract_boxed_all(region)
    if (
        len(boxes) == 1
        and isinstance(parse_number(boxes[0]), float)
        and not re.search(
            r"[A-Za-z]{2,}", re.sub(r"\\(text|mathrm|frac|dfrac|times|cdot)\b", "", boxes[0])
        )
    ):
        return None
    if len(boxes) == 1 and parse_number(boxes[0]) in ("infeasible", "unbounded"):
        return None
    why = (
        "no \\boxed{} answer"
        if not boxes
        else f"{len(boxes)} boxes"
        if len(boxes) > 1
        else f"boxed {boxes[0]!r} is not a lone number"
    )
    start = _answer_start(text)
    while start < len(text) and text[start] in "\n ":
        start += 1
    if start >= len(text):
        return None  # nothing after the thinking to cut at (a truncated turn)
    return _finding(flow, text, 7, start, why)


def fragmented_coding(flow, text: str) -> Finding | None:
    """Trigger 2: a later block fails on a name an earlier block defined, or many solver runs."""
    blocks = flow_blocks(flow)
    answers: list[int | None] = [None] * len(flow)  # the executor segment after each segment
    after = None
    for j in range(len(flow) - 1, -1, -1):
        answers[j] = after
        if flow[j].get("role") == "executor":
            after = j
    errors: dict[int, re.Match[str] | None] = {}
    first_definition: dict[str, int] = {}  # each searched once, however many blocks there are
    for i, block in enumerate(blocks[1:], 1):
        answer = answers[block.segment]
        if answer is None:
            continue
        if answer not in errors:
            errors[answer] = _NAME_ERROR.search(flow[answer]["text"])
        m = errors[answer]
        if m is None:
            continue
        if m.group(1) not in first_definition:
            defines = re.compile(rf"\b{re.escape(m.group(1))}\b\s*=")
            first_definition[m.group(1)] = next(
                (k for k, b in enumerate(blocks) if defines.search(b.code)), len(blocks)
            )
        if first_definition[m.group(1)] < i:
            return _finding(
                flow, text, 2, _block_start(text, i), f"block {i + 1} fails: {m.group(0)}"
            )
    # Re-solving after a run that worked (not to fix an error), again and again.
    solves = [i for i, b in enumerate(blocks) if _SOLVE_CALL.search(b.code)]
    reruns = [i for prev, i in zip(solves, solves[1:], strict=False) if blocks[prev].status == "ok"]
    if len(reruns) >= 2:
        return _finding(
            flow,
            text,
            2,
            _block_start(text, reruns[0]),
            f"{len(solves)} solver runs, {len(reruns)} after a successful one",
        )
    return None


def _block_start(text: str, index: int) -> int:
    pos = -1
    for _ in range(index + 1):
        pos = text.find(PYTHON_OPEN, pos + 1)
        if pos < 0:
            return -1
    line_start = text.rfind("\n", 0, pos) + 1
    return line_start


def premature_solving(flow, text: str) -> Finding | None:
    """Trigger 1: an answer is reached without any code block."""
    if PYTHON_OPEN in text or not extract_boxed_all(answer_region(text)):
        return None
    think = text[: text.rfind(THINK_END)] if THINK_END in text else text
    found = hand_arithmetic(think)
    start, end = found[0] if found else (-1, -1)
    position = text.rfind("\n", 0, start) + 1 if found else _answer_start(text)
    return _finding(
        flow,
        text,
        1,
        position,
        "answered with no code: " + (think[start:end][:60] if found else "no computation shown"),
    )


def redundant_verification(flow, text: str) -> Finding | None:
    """Trigger 3: after a successful solver output, several lines of arithmetic by hand."""
    offsets = _segments_offsets(flow)
    last_ok = max(
        (i for i, s in enumerate(flow) if s.get("role") == "executor" and s.get("status") == "ok"),
        default=None,
    )
    if last_ok is None:
        return None
    after_start = offsets[last_ok] + len(flow[last_ok]["text"])
    end = text.find(THINK_END, after_start)
    tail = text[after_start : end if end >= 0 else len(text)]
    matches = hand_arithmetic(tail)
    if len(matches) < 3:
        return None
    position = after_start + tail.rfind("\n", 0, matches[0][0]) + 1
    return _finding(
        flow, text, 3, position, f"{len(matches)} hand-computed lines after the solver output"
    )


def wrong_answer_findings(flow, text: str, record: dict[str, Any]) -> Finding | None:
    """Triggers 6, 5, else a generic re-check: only with a known truth and a wrong answer."""
    truth = parse_truth(record.get("answer"))
    if truth is None:
        return None
    boxes = extract_boxed_all(answer_region(text))
    prediction = (
        parse_number(boxes[0]) if len(boxes) == 1 else None
    )  # several boxes: trigger 7's job
    if prediction is None or compare(prediction, truth)[0]:
        return None
    blocks = flow_blocks(flow)
    outputs = [s for s in flow if s.get("role") == "executor"]
    last_out = outputs[-1]["text"] if outputs else ""
    last_block = len(blocks) - 1
    status = _BAD_STATUS.search(last_out)
    if status and blocks and truth not in ("infeasible", "unbounded"):
        return _finding(
            flow,
            text,
            6,
            _block_start(text, last_block),
            f"solver status {status.group(1)}",
            detail=status.group(1),
        )
    fractional = _ASSIGN.findall(last_out)
    fractional = [(n.strip(), v) for n, v in fractional if abs(float(v) - round(float(v))) > 1e-6]
    question = str(record.get("question", ""))
    if (
        fractional
        and blocks
        and _COUNT_WORDS.search(question)
        and not _INTEGER_DECL.search(blocks[-1].code)
    ):
        name, value = fractional[0]
        return _finding(
            flow,
            text,
            5,
            _block_start(text, last_block),
            f"{name} = {value} is fractional",
            detail=f"{name} = {value}",
        )
    start = _answer_start(text)
    while start < len(text) and text[start] in "\n ":
        start += 1
    generic = _finding(
        flow, text, 5, start, f"answer {prediction} differs from the reference", detail=""
    )
    if generic is not None:
        generic.hint = HINTS[0]
    return generic


def detect(record: dict[str, Any], flow: Sequence[dict[str, Any]] | None = None) -> list[Finding]:
    """Every finding on a trajectory, earliest first (ties: lower trigger number)."""
    flow = flow if flow is not None else record.get("flow") or []
    text = flow_text(flow)
    found = [
        f
        for f in (
            bad_answer_format(flow, text),
            fragmented_coding(flow, text),
            premature_solving(flow, text),
            redundant_verification(flow, text),
            wrong_answer_findings(flow, text, record),
        )
        if f is not None
    ]
    return sorted(found, key=lambda f: (f.position, f.trigger))
