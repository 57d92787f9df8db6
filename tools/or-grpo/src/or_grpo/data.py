"""Problems (SPEC §3) to parquet rows in the schema verl's RLHFDataset reads.

Each row: `data_source` (the benchmark: verl groups validation scores by it), `prompt` (the chat
messages, built exactly as or-gen builds them), `ability`, `reward_model.ground_truth` (the
answer as text: a number or infeasible/unbounded), `extra_info` (id, split, index, prompt
version) and `agent_name` (our agent loop). A problem without a usable answer cannot be
rewarded and is rejected with a `FILE:LINE: reason` line.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from or_common.answers import parse_truth
from or_common.jsonl import BadLine, read_lines
from or_common.reasoner import REASONER_DEFAULTS, build_messages

AGENT_NAME = "code_in_thinking"
ABILITY = "optimization-modeling"


@dataclass
class Prepared:
    rows: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "FILE:LINE: reason"
    read: int = 0


def ground_truth(answer: Any) -> str:
    """The answer as the text verl hands to the reward (parquet needs one type per column)."""
    if isinstance(answer, float) and answer.is_integer():
        return str(int(answer))
    return str(answer)


def problem_row(
    record: dict[str, Any],
    index: int,
    split: str,
    template: str,
    prompt_version: str,
    max_executions: int,
) -> dict[str, Any]:
    """One parquet row; raises ValueError with the reason when the problem cannot be used."""
    question = record.get("question")
    if not isinstance(question, str) or not question.strip():
        raise ValueError("missing field 'question' (a non-empty string)")
    if "id" not in record:
        raise ValueError("missing field 'id'")
    answer = record.get("answer")
    if answer is None:
        raise ValueError("no answer ('answer' is missing or null): the reward needs one")
    if parse_truth(answer) is None:
        raise ValueError(f"'answer' is not a number or infeasible/unbounded: {answer!r}")
    benchmark = record.get("benchmark")
    source = str(benchmark) if benchmark not in (None, "") else "unknown"
    return {
        "data_source": source,
        "prompt": build_messages(question, template, max_executions),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": ground_truth(answer)},
        "extra_info": {
            "id": str(record["id"]),
            "split": split,
            "index": index,
            "prompt_version": prompt_version,
        },
        "agent_name": AGENT_NAME,
    }


def _records(paths: Iterable[str]) -> Iterator[tuple[str, int, dict[str, Any] | str]]:
    for item in read_lines(tuple(paths)):
        if isinstance(item, BadLine):
            yield item.source, item.lineno, item.message
        else:
            yield item.source, item.lineno, item.record


def prepare(
    paths: Iterable[str],
    split: str,
    template: str,
    prompt_version: str,
    max_executions: int = REASONER_DEFAULTS.max_executions,
    tokenizer: Any = None,
    max_prompt_length: int | None = None,
) -> Prepared:
    """Read problem files; rows for the usable ones, `FILE:LINE: reason` for the others."""
    out = Prepared()
    for source, lineno, record in _records(paths):
        out.read += 1
        where = f"{source}:{lineno}" if lineno else source
        if isinstance(record, str):
            out.rejected.append(f"{where}: {record}")
            continue
        try:
            row = problem_row(
                record, len(out.rows), split, template, prompt_version, max_executions
            )
            if tokenizer is not None and max_prompt_length is not None:
                from or_common.tokens import prompt_ids

                n = len(prompt_ids(tokenizer, row["prompt"]))
                if n > max_prompt_length:
                    raise ValueError(
                        f"prompt is {n} tokens, over the limit of {max_prompt_length} "
                        "(--max-prompt-length); verl would drop it"
                    )
        except ValueError as err:
            out.rejected.append(f"{where}: {err}")
            continue
        out.rows.append(row)
    return out


def write_parquet(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Write rows with pyarrow (the format verl reads through `datasets`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), str(path))


def write_stamp(directory: str | Path, stamp: dict[str, Any]) -> None:
    """`prepare.json` next to the parquet files: where the rows came from and how."""
    Path(directory, "prepare.json").write_text(json.dumps(stamp, indent=2) + "\n")
