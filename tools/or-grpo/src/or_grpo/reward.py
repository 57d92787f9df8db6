"""The GRPO reward: or-score's strict protocol, binary.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` with the decoded
response. That text holds the sandbox's output blocks too, and only the model's own final answer
may count: the response is split back into the flow (reasoner and executor segments) and scored
by or-score's `score_record`, the same function that scores evaluation runs, with the executor
segments' text withheld so that a `\\boxed{}` printed by a program never answers. A response cut
by the budget (`finish == "length"`) has no final answer: reward 0.

The agent loop passes what it knows in `extra_info` (verl merges the loop's `extra_fields` into
it): `finish` and `executor_texts` (the output blocks, in order). Without them (another rollout
loop), output blocks are found by their fence and the finish is taken as a normal stop.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from or_common.blocks import python_blocks
from or_score.scorer import score_record

PROTOCOL = "strict"
_OUTPUT_BLOCK = re.compile(r"```output\n.*?\n```\n", re.DOTALL)


def split_flow(text: str, executor_texts: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The response as flow segments: the known output blocks located in order, or (without
    them) every fenced ```output block."""
    spans: list[tuple[int, int]] = []
    if executor_texts is not None:
        pos = 0
        for block in executor_texts:
            start = text.find(block, pos)
            if start < 0:  # cut off by the response length
                break
            spans.append((start, start + len(block)))
            pos = start + len(block)
    else:
        spans = [m.span() for m in _OUTPUT_BLOCK.finditer(text)]
    flow: list[dict[str, Any]] = []
    pos = 0
    for start, end in spans:
        if start > pos:
            flow.append({"role": "reasoner", "text": text[pos:start]})
        flow.append({"role": "executor", "text": text[start:end]})
        pos = end
    if pos < len(text):
        flow.append({"role": "reasoner", "text": text[pos:]})
    return flow


def score_response(
    solution_str: str,
    ground_truth: Any,
    finish: str = "stop",
    executor_texts: Sequence[str] | None = None,
    statuses: Sequence[str] | None = None,
    prompt_opens_think: bool = False,
) -> dict[str, Any]:
    """or-score's verdict on one response: the record's `score` object."""
    flow = split_flow(solution_str, executor_texts)
    status_iter = iter(statuses or ())
    for seg in flow:
        if seg["role"] == "executor":
            seg["status"] = next(status_iter, None)
            seg["text"] = ""  # only the model's own text can hold the answer
    gen = {"finish": finish, "prompt_opens_think": prompt_opens_think}
    record = {"answer": ground_truth, "flow": flow, "gen": gen}
    return score_record(record, PROTOCOL)["score"]


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    **_: Any,
) -> dict[str, float]:
    """verl's reward function: `score` is 1.0 for a correct final answer, else 0.0. The other
    keys are numbers verl averages in validation (`val-aux/<source>/<key>/mean@N`)."""
    extra = dict(extra_info or {})
    executor_texts = extra.get("executor_texts")
    score = score_response(
        solution_str,
        ground_truth,
        finish=str(extra.get("finish") or "stop"),
        executor_texts=list(executor_texts) if executor_texts is not None else None,
        statuses=extra.get("executor_statuses"),
        prompt_opens_think=extra.get("prompt_opens_think") is True,
    )
    finish = str(extra.get("finish") or "stop")
    # A response cut by the budget never earns the reward, whatever or-score's reason says.
    correct = bool(score["correct"]) and finish != "length"
    code_blocks = extra.get("code_blocks")
    if code_blocks is None:
        code_blocks = len(python_blocks(solution_str))
    return {
        "score": 1.0 if correct else 0.0,
        "acc": 1.0 if correct else 0.0,
        "truncated": 1.0 if finish == "length" or score["reason"] == "truncated" else 0.0,
        # named apart from the agent loop's own fields, which verl puts in the same batch
        "n_code_blocks": float(code_blocks),
        "n_executions": float(extra.get("executions") or 0),
    }
