"""The GRPO reward: or-score's strict protocol, binary.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info)` with the decoded
response. Only the model's own final answer may count, never text a program printed, and the
decoded response cannot tell the two apart: the tokenizer normalises text (NFC: a printed
`e` + U+0301 comes back as `é`) and verl's decoding drops special tokens (a printed
`<|im_end|>`), so an output block cannot be found again by its text. The agent loop therefore
passes the response split by its mask (verl merges the loop's `extra_fields` into `extra_info`):

- `model_segments`: one entry per run of the response mask, the model's own text (mask 1,
  decoded on its own) or None for program output (mask 0);
- `executor_statuses` (the status of each output block) and `finish`.

The flow is rebuilt from those, the output blocks withheld, and scored by
`or_common.scoring.score_record`, the same function that scores or-score's evaluation runs. A response cut by the budget
(`finish == "length"`) has no final answer: reward 0.

Without `model_segments` (another rollout loop), the fallback is conservative: a response with
no ```output block is read whole; otherwise only the text after its last fence-only line counts
(`or_common.turn.text_after_outputs`: an output block always ends with one, and whatever a
program printed lies before it), so the final text must close the thinking itself.
`executor_texts` is never searched for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from or_common.blocks import python_blocks
from or_common.scoring import score_record
from or_common.turn import text_after_outputs

PROTOCOL = "strict"


def judged_flow(
    solution_str: str,
    model_segments: Sequence[str | None] | None,
    statuses: Sequence[Any] | None = None,
) -> list[dict[str, Any]]:
    """The flow the reward judges: the model's own segments, each output block as an executor
    segment with its status and no text. Without `model_segments`, the conservative fallback
    of the module docstring."""
    status_iter = iter(statuses or ())
    if model_segments is None:
        tail = text_after_outputs(solution_str)
        if tail is None:
            return [{"role": "reasoner", "text": solution_str}]
        return [
            {"role": "executor", "text": "", "status": None},
            {"role": "reasoner", "text": tail},
        ]
    flow: list[dict[str, Any]] = []
    for text in model_segments:
        if text is None:
            flow.append({"role": "executor", "text": "", "status": next(status_iter, None)})
        else:
            flow.append({"role": "reasoner", "text": str(text)})
    return flow


def score_response(
    solution_str: str,
    ground_truth: Any,
    finish: str = "stop",
    model_segments: Sequence[str | None] | None = None,
    statuses: Sequence[str] | None = None,
    prompt_opens_think: bool = False,
) -> dict[str, Any]:
    """or-score's verdict on one response: the record's `score` object."""
    flow = judged_flow(solution_str, model_segments, statuses)
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
    segments = extra.get("model_segments")
    finish = str(extra.get("finish") or "stop")
    score = score_response(
        solution_str,
        ground_truth,
        finish=finish,
        model_segments=list(segments) if segments is not None else None,
        statuses=extra.get("executor_statuses"),
        prompt_opens_think=extra.get("prompt_opens_think") is True,
    )
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
