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
    segment: int  # index of the flow segment that holds it
    status: str | None  # status of the executor segment that answered it, if any


def flow_blocks(flow: Sequence[dict[str, Any]]) -> list[Block]:
    """Every python block the model (or a hint) wrote, with the status of its execution."""
    blocks: list[Block] = []
    for i, seg in enumerate(flow):
        if seg.get("role") == "executor":
            if blocks and blocks[-1].status is None:
                blocks[-1].status = seg.get("status")
            continue
        blocks.extend(Block(code, i, None) for code in python_blocks(seg.get("text", "")))
    return blocks


def awaits_execution(flow: Sequence[dict[str, Any]]) -> bool:
    """True if the flow stops right after a complete python block that has no output yet."""
    if not flow or flow[-1].get("role") == "executor":
        return False
    text = flow[-1].get("text", "")
    matches = list(_BLOCK.finditer(text))
    return bool(matches) and not text[matches[-1].end() :].strip()
