"""Reading scored runs for the report: every sample grouped by benchmark and problem, under the
run's own protocol or the one asked for, with what a reader must be warned of (mixed or
mismatched protocols, duplicated `(id, sample)` pairs)."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from or_common.flow import code_blocks, completion_tokens, executions
from or_common.records import RecordError
from or_common.scoring import check_scorable, current_score

DEFAULT_PROTOCOL = "strict"


@dataclass(slots=True)
class Sample:
    sample: int | None
    correct: bool | None
    prediction: Any
    reason: str
    tokens: int | None
    blocks: int
    executions: int
    format: str | None = None


def _verdict(score: dict[str, Any]) -> tuple[bool | None, Any, str, str | None]:
    return score["correct"], score["prediction"], score["reason"], score.get("format")


@dataclass
class Run:
    """Every scored sample of one run file, grouped by benchmark and problem.

    `asked` is the protocol given with --protocol (None: the run's own). Each record is judged
    under `asked`, or under its own current score's protocol; when the run turns out not to be
    all scored under one protocol, the strict verdicts kept aside are used (see `settle`)."""

    source: str
    label: str
    asked: str | None
    protocol: str = DEFAULT_PROTOCOL
    problems: dict[str, dict[str, list[Sample]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    models: Counter = field(default_factory=Counter)
    data_files: Counter = field(default_factory=Counter)
    #: protocols of the records' own current scores; "unscored" for a record without one
    own: Counter = field(default_factory=Counter)
    keys: Counter = field(default_factory=Counter)
    #: what the reader must hear of (set by `settle`, which `load_run` calls)
    warnings: list[str] = field(default_factory=list)
    _strict: dict[int, tuple[bool | None, Any, str, str | None]] = field(default_factory=dict)
    _samples: list[Sample] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        check_scorable(record)
        stored = record.get("score")
        own = current_score(record)  # the stored score when it is current, else strict afresh
        self.own[own["protocol"] if own is stored else "unscored"] += 1
        score = own if self.asked in (None, own["protocol"]) else current_score(record, self.asked)
        bench = str(record.get("benchmark") or "unknown")
        sample = record.get("sample")
        sample = sample if isinstance(sample, int) and not isinstance(sample, bool) else None
        item = Sample(sample, *_verdict(score)[:3], *usage(record), score.get("format"))
        if self.asked is None and score["protocol"] != DEFAULT_PROTOCOL:
            self._strict[len(self._samples)] = _verdict(current_score(record, DEFAULT_PROTOCOL))
        self._samples.append(item)
        self.problems[bench][str(record["id"])].append(item)
        self.keys[(str(record["id"]), sample)] += 1
        gen = record.get("gen")
        if isinstance(gen, dict) and gen.get("model"):
            self.models[str(gen["model"])] += 1
        if record.get("source"):
            self.data_files[data_version(str(record["source"]))] += 1

    def settle(self) -> list[str]:
        """Fix the run's protocol once every record is read; return the warnings to print."""
        if self.asked is not None:
            self.protocol = self.asked
            mine = [p for p in self.own if p != "unscored"]
            if mine and set(mine) != {self.asked}:
                return [
                    f"{self.label}: scored under {_counts(self.own)}; reported under"
                    f" {self.asked} as asked (--protocol), re-scored where it differs"
                ]
            return []
        if len(self.own) == 1 and "unscored" not in self.own:
            self.protocol = next(iter(self.own))
            return []
        self.protocol = DEFAULT_PROTOCOL
        for i, (correct, prediction, reason, fmt) in self._strict.items():
            s = self._samples[i]
            s.correct, s.prediction, s.reason, s.format = correct, prediction, reason, fmt
        if set(self.own) - {"unscored", DEFAULT_PROTOCOL}:
            return [
                f"{self.label}: records are scored under {_counts(self.own)}, not one protocol;"
                f" all are reported under {DEFAULT_PROTOCOL} (give --protocol to choose)"
            ]
        return []

    def duplicates(self) -> list[tuple[str, int | None, int]]:
        return [(pid, s, n) for (pid, s), n in self.keys.items() if n > 1]


def _counts(counter: Counter) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counter.most_common())


def data_version(source: str) -> str:
    """`owner/repo@<sha>:path/file.jsonl` -> `owner/repo@<sha7>:file.jsonl`, the data's version."""
    repo, _, rest = source.partition("@")
    commit, _, path = rest.partition(":")
    if not rest:
        return source
    return f"{repo}@{commit[:7]}:{os.path.basename(path)}"


def usage(record: dict[str, Any]) -> tuple[int | None, int, int]:
    """(completion tokens, code blocks written, executions run) of one trajectory, counted by
    `or_common.flow` (closed code blocks only: an unclosed opening is no block)."""
    value = record.get("flow")
    flow = value if isinstance(value, list) else []
    return completion_tokens(record), code_blocks(flow), executions(flow)


def load_run(path: str, protocol: str | None, label: str | None, on_bad) -> Run:
    """Read one run file (`-` for stdin), judging each record under `protocol` (None: the
    run's own). `on_bad(BadLine)` hears of every line that cannot be used; `run.warnings`
    holds what the reader must hear of."""
    from or_common.jsonl import BadLine, read_lines, source_name

    name = label or (
        "stdin"
        if path == "-"
        else os.path.basename(path).removesuffix(".gz").removesuffix(".jsonl")
    )
    run = Run(source=source_name(path), label=name, asked=protocol)
    for item in read_lines([path]):
        if isinstance(item, BadLine):
            on_bad(item)
            continue
        try:
            if "id" not in item.record:
                raise RecordError("missing field 'id'")
            run.add(item.record)
        except RecordError as err:
            on_bad(BadLine(item.source, item.lineno, str(err)))
    run.warnings = run.settle()
    return run


def per_problem(run: Run) -> dict[str, dict[str, float]]:
    """pass@1 of each judged problem, by benchmark."""
    out: dict[str, dict[str, float]] = {}
    for bench, problems in run.problems.items():
        scores = {}
        for pid, samples in problems.items():
            judged = [s for s in samples if s.correct is not None]
            if judged:
                scores[pid] = sum(1 for s in judged if s.correct) / len(judged)
        out[bench] = scores
    return out


def deltas(base: Run, other: Run) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """pass@1 of `other` minus `base`, per benchmark, over the problems both judged; and the
    warnings for benchmarks whose problem sets differ."""
    mine, theirs = per_problem(base), per_problem(other)
    out: dict[str, dict[str, Any]] = {}
    warnings = []
    for bench in sorted(set(mine) & set(theirs)):
        a, b = mine[bench], theirs[bench]
        shared = sorted(set(a) & set(b))
        only_a, only_b = len(set(a) - set(b)), len(set(b) - set(a))
        if only_a or only_b:
            warnings.append(
                f"{bench}: {base.label} and {other.label} differ in problems ({only_a} only in"
                f" {base.label}, {only_b} only in {other.label}): its delta is over the"
                f" {len(shared)} shared problems"
            )
        if shared:
            delta = sum(b[p] - a[p] for p in shared) / len(shared)
            out[bench] = {"pass@1": delta, "shared": len(shared)}
    return out, warnings


def load_runs(
    paths: Sequence[str],
    protocols: Sequence[str],
    labels: Sequence[str],
    bad_line: Callable[..., Any],
    warn: Callable[[str], None],
) -> list[Run]:
    """Load each run (under its own --protocol, one for all, or each its own), warning of what
    a reader must know: the run's own warnings and its duplicated (id, sample) pairs."""
    loaded = []
    for i, path in enumerate(paths):
        asked = protocols[i] if len(protocols) > 1 else (protocols[0] if protocols else None)
        run = load_run(path, asked, labels[i] if labels else None, bad_line)
        for warning in run.warnings:
            warn(warning)
        duplicates = run.duplicates()
        for pid, sample, n in duplicates[:5]:
            warn(f"{run.label}: ({pid}, sample {sample}) appears {n} times; each copy is counted")
        if len(duplicates) > 5:
            warn(f"{run.label}: {len(duplicates)} duplicated (id, sample) pairs in all")
        loaded.append(run)
    return loaded
