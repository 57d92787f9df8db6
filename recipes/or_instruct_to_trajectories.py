"""Turn OR-Instruct-style records into or-sft trajectories for the paper's pilot (SFT on
non-reflective answers, the "base + SFT on OR-Instruct-3K" row).

Input: records like ../shared/data/train_or_instruct_sample100.jsonl (`question`, and the dataset's
answer in `meta.completion`: a model and its solver code, written without reflection or
execution). Output, one trajectory per record (every input key kept):

- `messages`: the Reasoner prompt exactly as or-gen builds it (`build_messages` with
  REASONER_PROMPT and the same execution limit), so the pilot and CALM train on the same prompt;
- `flow`: one reasoner segment, "\\n</think>\\n\\n" + the completion. The chat template's
  generation prompt already opened `<think>\\n`; closing it at once is how Qwen3 renders an
  assistant turn with no thinking, i.e. a non-reflective answer. The completion is kept
  verbatim (it uses coptpy, as the dataset does); no code is run, so there is no executor segment;
- `gen`: `finish: "stop"` (the answer is complete: end of turn trained), `executions: 0`,
  the prompt version, and `model`/`backend` naming the dataset, not a model we ran.

    uv run python recipes/or_instruct_to_trajectories.py \\
        ../shared/data/train_or_instruct_sample100.jsonl -o pilot.jsonl
    uv run or-sft pilot.jsonl --model Qwen/Qwen3-4B-Thinking-2507 -o ckpt/pilot

Lines that are not JSON objects or lack `question` / `meta.completion` are reported as
FILE:LINE: reason on stderr and skipped; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from or_common.jsonl import BadLine, Writer, open_output, read_lines
from or_common.reasoner import PROMPT_VERSION, REASONER_PROMPT, build_messages
from or_common.records import TOOL_VERSION

CONVERTER = "recipes/or_instruct_to_trajectories.py"
EMPTY_THINKING = "\n</think>\n\n"


def convert(record: dict[str, Any], max_executions: int = 4) -> dict[str, Any]:
    """One OR-Instruct record as a trajectory; ValueError says what is missing."""
    question = record.get("question")
    meta = record.get("meta")
    completion = meta.get("completion") if isinstance(meta, dict) else None
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing field 'question'")
    if not isinstance(completion, str) or not completion.strip():
        raise ValueError("missing field 'meta.completion' (the dataset's answer)")
    return {
        **record,
        "sample": 0,
        "messages": build_messages(question, REASONER_PROMPT, max_executions),
        "flow": [{"role": "reasoner", "text": EMPTY_THINKING + completion.strip()}],
        "gen": {
            "model": "dataset:OR-Instruct-3K",
            "backend": "dataset",
            "finish": "stop",
            "executions": 0,
            "max_executions": max_executions,
            "prompt_version": PROMPT_VERSION,
            "tool_version": TOOL_VERSION,
            "converter": CONVERTER,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("inputs", nargs="*", default=["-"])
    parser.add_argument("-o", "--output", help="write here instead of stdout")
    parser.add_argument("--max-executions", type=int, default=4, help="as in or-gen's prompt")
    args = parser.parse_args(argv)
    stream = open_output(args.output, append=False) if args.output else sys.stdout.buffer
    writer = Writer(stream)
    bad = 0
    for item in read_lines(args.inputs):
        if isinstance(item, BadLine):
            bad += 1
            print(str(item) if item.lineno else f"{item.source}: {item.message}", file=sys.stderr)
            continue
        try:
            writer.write(convert(item.record, args.max_executions))
        except ValueError as err:
            bad += 1
            print(f"{item.where()}: {err}", file=sys.stderr)
    print(f"or_instruct_to_trajectories: {writer.count} written, {bad} bad", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
