"""Code blocks in a flow: the ```python blocks the Reasoner writes and the ```output blocks the
executor answers with.

A block is an opening "```python" followed by optional spaces or tabs and a newline, its code,
and a closing line that is only "```" (optionally followed by spaces or tabs). Scanning is one
forward pass, linear in the text: a record of thousands of unclosed openings costs what a benign
record of the same size costs (a lazy `.*?` regex rescanned the rest of the text per opening)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PYTHON_OPEN = "```python"
#: A closing fence line; searched from a line start, it never backtracks across lines.
_CLOSING_LINE = re.compile(r"^```[ \t]*$", re.MULTILINE)


def _scan(text: str) -> list[tuple[str, int]]:
    """(code, end) of every complete ```python block in order, `end` just past the closing fence
    (before its newline). Once an opening has no closing line after it, no later opening can
    have one, so the scan stops there."""
    found: list[tuple[str, int]] = []
    pos = 0
    while (start := text.find(PYTHON_OPEN, pos)) >= 0:
        j = start + len(PYTHON_OPEN)
        while j < len(text) and text[j] in " \t":
            j += 1
        if j >= len(text) or text[j] != "\n":  # "```python3", "```pythonic": no opening
            pos = start + 1
            continue
        close = _CLOSING_LINE.search(text, j + 1)
        if close is None:
            break
        found.append((text[j + 1 : close.start()], close.end()))
        pos = close.end()
    return found


def python_blocks(text: str) -> list[str]:
    """The code of every complete ```python block in `text`, in order."""
    return [code for code, _ in _scan(text)]


@dataclass
class Block:
    code: str
    segment: int  # index of the flow segment where the block is closed
    status: str | None  # status of the executor segment that answered it, if any


def _runs(flow: Sequence[dict[str, Any]]) -> list[tuple[list[int], str]]:
    """Maximal runs of consecutive non-executor segments, as (indices, joined text). A block may
    open in one segment (an intervener hint ending in an opened fence) and close in the next."""
    runs: list[tuple[list[int], str]] = []
    current: list[int] = []
    for i, seg in enumerate(flow):
        if seg.get("role") == "executor":
            if current:
                runs.append((current, "".join(flow[j].get("text", "") for j in current)))
                current = []
        else:
            current.append(i)
    if current:
        runs.append((current, "".join(flow[j].get("text", "") for j in current)))
    return runs


def flow_blocks(flow: Sequence[dict[str, Any]]) -> list[Block]:
    """Every python block the model (or a hint) wrote, with the status of its execution."""
    blocks: list[Block] = []
    for indices, text in _runs(flow):
        ends = []
        pos = 0
        for j in indices:
            pos += len(flow[j].get("text", ""))
            ends.append((pos, j))
        found: list[Block] = []
        k = 0  # blocks end in order, so the segment that holds each end is found in one pass
        for code, end in _scan(text):
            while ends[k][0] < end:
                k += 1
            found.append(Block(code, ends[k][1], None))
        after = indices[-1] + 1
        if found and after < len(flow):  # the executor segment after a run answers its last block
            found[-1].status = flow[after].get("status")
        blocks.extend(found)
    return blocks


def awaits_execution(flow: Sequence[dict[str, Any]]) -> bool:
    """True if the flow stops right after a complete python block that has no output yet."""
    if not flow or flow[-1].get("role") == "executor":
        return False
    text = _runs(flow)[-1][1]
    found = _scan(text)
    return bool(found) and not text[found[-1][1] :].strip()
