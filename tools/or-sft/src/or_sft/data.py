"""From trajectory records to training examples: input hygiene, the token layer, the counts.

An example is `{"id", "sample", "input_ids", "labels"}`: the token layer's sequence (prompt by
the chat template, then each flow segment tokenized on its own, then the end-of-turn token) with
-100 wherever the model is not trained (prompt, executor output). The assistant turn is never
re-rendered through the chat template.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from or_common import jsonl
from or_common.blocks import awaits_execution
from or_common.flow import final_finish
from or_common.jsonl import BadLine, Line
from or_common.records import ENDED_NORMALLY, ROLES, TRAINED_ROLES, RecordError, find_error
from or_common.tokens import IGNORE_INDEX, Encoded, encode_record
from or_common.turn import has_output_opening, is_output_block


class Rejected(RecordError):
    """A record that must not be trained on; the message says why."""


def check_flow(flow: Any) -> None:
    """Raise Rejected unless `flow` is what a reasoning turn with code produces: a non-empty
    list of segments with known roles and string texts, where every executor segment is one
    output block answering a python block closed right before it. Model-written text never
    contains an output block (only the sandbox writes them; training on one would teach the
    model to invent solver output)."""
    if not isinstance(flow, list) or not flow:
        raise Rejected("flow is empty" if isinstance(flow, list) else "flow must be a list")
    for i, seg in enumerate(flow):
        if not isinstance(seg, Mapping):
            raise Rejected(f"flow[{i}] must be an object")
        role, text = seg.get("role"), seg.get("text")
        if role not in ROLES:
            raise Rejected(f"flow[{i}].role is {role!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(text, str):
            raise Rejected(f"flow[{i}].text must be a string")
        if role == "executor":
            if not is_output_block(text):
                raise Rejected(f"flow[{i}] (executor) is not a ```output block")
            if not awaits_execution(flow[:i]):
                raise Rejected(f"flow[{i}] (executor) does not follow a closed ```python block")
        elif has_output_opening(text):
            raise Rejected(f"flow[{i}] ({role}) writes a ```output block; only the executor does")
    if not any(seg["role"] in TRAINED_ROLES and seg["text"] for seg in flow):
        raise Rejected("no reasoner or intervener text to train on")


def check_record(record: Mapping[str, Any]) -> None:
    """Raise Rejected for a record that must not be trained on: an error from any tool, chat
    mode, no flow, a flow that breaks the turn rules (`check_flow`)."""
    error = find_error(record)
    if error is not None:
        tool = error.get("tool", "?") if isinstance(error, Mapping) else "?"
        message = error.get("message", "") if isinstance(error, Mapping) else str(error)
        raise Rejected(f"the record carries an error from {tool}: {message}".rstrip(": "))
    gen = record.get("gen")
    if isinstance(gen, Mapping) and gen.get("mode") == "chat":
        raise Rejected(
            "chat-mode trajectory (gen.mode = chat): its outputs were sent as user turns, so it "
            "has no single token sequence to train on"
        )
    if "flow" not in record:
        raise Rejected("missing field 'flow' (not a trajectory)")
    check_flow(record["flow"])


def to_example(record: Mapping[str, Any], encoded: Encoded) -> dict[str, Any]:
    return {
        "id": record.get("id"),
        "sample": record.get("sample"),
        "input_ids": encoded.input_ids,
        "labels": encoded.labels,
    }


@dataclass
class Counts:
    """What the examples come to (the summary on stderr and in run.json)."""

    records: int = 0
    kept: int = 0
    rejected: int = 0
    too_long: int = 0
    no_end_of_turn: int = 0
    trained_tokens: int = 0
    masked_tokens: int = 0
    longest: int = 0
    longest_id: Any = None
    reasons: dict[str, int] = field(default_factory=dict)

    def add(self, example: dict[str, Any], ended: bool) -> None:
        n = len(example["input_ids"])
        trained = sum(1 for t in example["labels"] if t != IGNORE_INDEX)
        self.kept += 1
        self.trained_tokens += trained
        self.masked_tokens += n - trained
        self.no_end_of_turn += not ended
        if n > self.longest:
            self.longest, self.longest_id = n, [example["id"], example["sample"]]

    def reject(self, reason: str) -> None:
        self.rejected += 1
        kind = re.sub(
            r"\[\d+\]", "[i]", reason.split(": ")[0] if "error from" in reason else reason
        )
        self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def summary(self, max_length: int | None) -> str:
        parts = [
            f"{self.kept} examples kept of {self.records}",
            f"{self.trained_tokens:,} trained tokens",
            f"{self.masked_tokens:,} masked tokens",
            f"longest {self.longest:,} tokens",
        ]
        if self.too_long:
            parts.append(f"{self.too_long} longer than --max-length {max_length} skipped")
        if self.rejected:
            parts.append(f"{self.rejected} rejected")
        if self.no_end_of_turn:
            parts.append(f"{self.no_end_of_turn} without end of turn (finish != stop)")
        return "or-sft: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_lines(paths: Iterable[str], counts: Counts, report) -> Iterator[Line]:
    """Every JSON-object line of `paths`; bad lines (and inputs that cannot be read) are
    reported as `FILE:LINE: reason`."""
    for item in jsonl.read_lines(paths):
        if isinstance(item, BadLine):
            if item.lineno:
                counts.records += 1
            counts.reject(item.message)
            report(str(item) if item.lineno else f"{item.source}: {item.message}")
            continue
        counts.records += 1
        yield item


def examples(
    tokenizer: Any,
    paths: Iterable[str],
    counts: Counts,
    report,
    max_length: int | None = None,
) -> Iterator[dict[str, Any]]:
    """The training examples of every usable record, in input order. Rejected records and
    bad lines go to `report` as `FILE:LINE: reason` and are counted; examples longer than
    `max_length` are skipped (never cut) and counted, with a note."""
    for line in read_lines(paths, counts, report):
        record = line.record
        try:
            check_record(record)
            encoded = encode_record(tokenizer, record)
        except RecordError as err:
            counts.reject(str(err))
            report(f"{line.where()}: {err}")
            continue
        n = len(encoded.input_ids)
        if max_length is not None and n > max_length:
            counts.too_long += 1
            report(
                f"{line.where()}: note: {n} tokens > --max-length {max_length}, skipped (not cut)"
            )
            continue
        example = to_example(record, encoded)
        ended = bool(encoded.input_ids) and encoded.loss_mask[-1] == 1 and _ended(record)
        counts.add(example, ended)
        yield example


def _ended(record: Mapping[str, Any]) -> bool:
    return final_finish(record) in ENDED_NORMALLY


def show_example(tokenizer: Any, example: Mapping[str, Any], color: bool = False) -> str:
    """One example as text for a human: the decoded sequence with each trained span wrapped in
    «…» (or shown in green with `color`), masked text left plain."""
    ids, labels = example["input_ids"], example["labels"]
    spans: list[tuple[bool, list[int]]] = []
    for tok, lab in zip(ids, labels, strict=True):
        trained = lab != IGNORE_INDEX
        if spans and spans[-1][0] == trained:
            spans[-1][1].append(tok)
        else:
            spans.append((trained, [tok]))
    parts = []
    for trained, toks in spans:
        text = tokenizer.decode(toks, skip_special_tokens=False)
        if trained:
            parts.append(f"\x1b[32m{text}\x1b[0m" if color else f"«{text}»")
        else:
            parts.append(text)
    trained_n = sum(1 for lab in labels if lab != IGNORE_INDEX)
    head = (
        f"# {example.get('id')} sample {example.get('sample')}: {len(ids)} tokens, "
        f"{trained_n} trained ({'green' if color else 'inside «»'}), {len(ids) - trained_n} masked\n"
    )
    return head + "".join(parts) + "\n"
