"""What a trajectory record says about itself: one definition of each count and of the final
turn, so a report, a filter, a training metric and a viewer cannot count differently.

- `code_blocks(flow)`: the code blocks the model wrote, counted as the turn rules see them: a
  block is a ```python opening and its closing fence line (`blocks.flow_blocks`, the same
  recogniser that decides what runs). An opening never closed (a turn cut by its budget inside
  a block, or one that ended there) is not counted: it was never a block that could run, and
  counting it would make the paper's "code blocks per response" (Table 2) and its training
  curve (Figure 6) disagree with the executions beside them. or-score's report and or-grpo's
  metrics both count this way.
- `executions(flow)`: the executor segments that ran (a `skipped` answer ran nothing).
- `final_turn(record)`: the stamp of the turn the flow ends with, `final_finish` its finish
  and `completion_tokens` its model-written tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .blocks import flow_blocks
from .records import SKIPPED


def code_blocks(flow: Sequence[dict[str, Any]]) -> int:
    """How many code blocks the model (or a hint) wrote in `flow`: closed ```python blocks
    only (see the module docstring for why an unclosed opening does not count)."""
    return len(flow_blocks(flow))


def executions(flow: Sequence[Any]) -> int:
    """How many executions `flow` holds: its executor segments, less those that answer a block
    closed after the limit (`skipped`: nothing ran). What the turn rules count against
    `max_executions`, and what reports and funnels show."""
    return sum(
        1
        for seg in flow
        if isinstance(seg, Mapping)
        and seg.get("role") == "executor"
        and seg.get("status") != SKIPPED
    )


def final_turn(record: Mapping[str, Any]) -> Mapping[str, Any]:
    """The stamp of the turn the record's flow ends with: or-intervene's `calm.final` (the
    corrected flow) over or-gen's `gen`, field by field (a field the final stamp lacks or holds
    as null is the generation's); empty when the record has neither."""
    gen = record.get("gen")
    gen = gen if isinstance(gen, Mapping) else {}
    calm = record.get("calm")
    final = calm.get("final") if isinstance(calm, Mapping) else None
    if not isinstance(final, Mapping):
        return gen
    return {**gen, **{k: v for k, v in final.items() if v is not None}}


def final_finish(record: Mapping[str, Any]) -> str | None:
    """How the record's final turn ended (`final_turn`'s `finish`), None when it does not say."""
    finish = final_turn(record).get("finish")
    return finish if isinstance(finish, str) else None


def completion_tokens(record: Mapping[str, Any]) -> int | None:
    """Tokens the model wrote in the final turn (`final_turn`'s `completion_tokens`)."""
    tokens = final_turn(record).get("completion_tokens")
    return tokens if isinstance(tokens, int) else None


__all__ = ["code_blocks", "completion_tokens", "executions", "final_finish", "final_turn"]
