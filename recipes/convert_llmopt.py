"""Convert one LLMOPT test-set file to calm-storm problem records (stdout).

Numeric-string answers become numbers; the "no solution" sentinels (-99999, -9999) become null
with the raw value kept in meta.raw_answer, as in ../shared/data.
"""

from __future__ import annotations

import argparse
import json
import sys

SENTINELS = {-99999, -9999}
QUESTION_KEYS = ("question", "en_question", "Question", "problem")
ANSWER_KEYS = ("answer", "en_answer", "Answer", "optimal_value")


def first(record: dict, keys: tuple[str, ...]):
    for key in keys:
        if key in record:
            return record[key]
    raise KeyError(f"none of {keys} in record")


def to_number(value):
    if isinstance(value, str):
        try:
            value = float(value.replace(",", ""))
        except ValueError:
            return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return None if value in SENTINELS else value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--source", required=True)
    args = parser.parse_args()
    with open(args.path) as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            raw = json.loads(line)
            index = raw.get("index", n)
            raw_answer = first(raw, ANSWER_KEYS)
            record = {
                "id": f"{args.benchmark}-{index}",
                "benchmark": args.benchmark,
                "question": first(raw, QUESTION_KEYS),
                "answer": to_number(raw_answer),
                "source": args.source,
                "meta": {"llmopt_index": index, "raw_answer": raw_answer},
            }
            sys.stdout.write(json.dumps(record, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
