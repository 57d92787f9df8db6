"""Code blocks in a flow: the ```python blocks the Reasoner writes and the ```output blocks the
executor answers with."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

PYTHON_OPEN = "```python"
FENCE = "```"
#: A complete python block: the opening fence line, the code, and a closing fence on its own line.
_BLOCK = re.compile(r"```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    """The code of every complete ```python block in `text`, in order."""
    return [m.group(1) for m in _BLOCK.finditer(text)]


def ends_with_open_block(text: str) -> bool:
    """True if `text` stops inside a ```python block (its closing fence not yet written)."""
    start = text.rfind(PYTHON_OPEN)
    if start < 0:
        return False
    return not python_blocks(text[start:])


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
        found = [
            Block(m.group(1), next(j for end, j in ends if end >= m.end()), None)
            for m in _BLOCK.finditer(text)
        ]
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
    matches = list(_BLOCK.finditer(text))
    return bool(matches) and not text[matches[-1].end() :].strip()
