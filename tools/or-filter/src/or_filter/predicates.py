"""The filter stages and the funnel. Streaming stages decide record by record; the last two
(one-per-problem, sample) need to see every candidate and keep one record per problem or N
records per stratum."""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from or_common.answers import parse_truth
from or_common.flow import completion_tokens
from or_common.jsonl import BadLine, read_records
from or_common.records import RecordError, flow_text
from or_common.scoring import current_score
from or_common.texts import problem_text, reference_texts
from or_common.usage import UsageLine

from .dedup import NearDupIndex

Stage = tuple[
    str, Callable[[dict[str, Any]], str | None]
]  # (name, record -> reject reason or None)


def bench_of(record: dict[str, Any]) -> str:
    return str(record.get("benchmark") or "unknown")


def norm_bench(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


def is_correct(record: dict[str, Any]) -> bool:
    """Correct by or-score's rules: its `score` when that still belongs to this flow and this
    scoring version, else scored afresh (under the stored score's protocol, else strict). A
    record in no shape or-score reads (a problem, not a response) is not correct."""
    try:
        return bool(current_score(record)["correct"])
    except RecordError:
        return False


def length_of(record: dict[str, Any]) -> int:
    """Response length for 'shortest': the corrected flow's tokens, else the generation's, else chars/4."""
    tokens = completion_tokens(record)
    return tokens if tokens is not None else len(flow_text(record.get("flow") or [])) // 4


def ids_in(paths: Iterable[str]) -> set[str]:
    return {str(r["id"]) for r in read_records(paths) if not isinstance(r, BadLine) and "id" in r}


def reference_index(
    paths: Iterable[str], jaccard: float, text_key: str | None, min_words: int
) -> NearDupIndex:
    """The questions of the reference files, read before any input: a reference file that is
    empty, or a line that is not a record or holds no problem text, is a usage error
    (`FILE:LINE`), never a reference that silently matches nothing."""
    index = NearDupIndex(jaccard=jaccard, min_words=min_words)
    for path in paths:
        before = len(index)
        lines = 0
        for record, text in reference_texts(path, text_key, "--decontaminate"):
            lines += 1
            index.add(str(record.get("id")), text)
        if not lines:
            raise UsageLine(f"--decontaminate {path} holds no record: nothing to compare with")
        if len(index) == before:
            raise UsageLine(f"--decontaminate {path}: no question has a word to compare")
    return index


def streaming_stages(
    opts: dict[str, Any], count_tokens: Callable[[dict[str, Any]], int] | None
) -> list[Stage]:
    """The per-record stages, in the order they apply."""
    stages: list[Stage] = []
    if opts["exclude"]:
        excluded = ids_in(opts["exclude"])
        stages.append(
            ("exclude", lambda r: "excluded_id" if str(r.get("id")) in excluded else None)
        )
    if opts["benchmark"]:
        wanted = {norm_bench(b) for b in opts["benchmark"]}
        stages.append(
            (
                "benchmark",
                lambda r: None if norm_bench(bench_of(r)) in wanted else "other_benchmark",
            )
        )
    if opts["has_answer"]:
        stages.append(
            (
                "has-answer",
                lambda r: None if parse_truth(r.get("answer")) is not None else "no_answer",
            )
        )
    if opts["decontaminate"]:
        text_key = opts["text_key"]
        index = reference_index(
            opts["decontaminate"], opts["threshold"], text_key, opts["containment_min_words"]
        )

        def decontaminate(r: dict[str, Any]) -> str | None:
            hit = index.match(problem_text(r, text_key))  # RecordError: a FILE:LINE error
            return f"near_duplicate_of:{hit[0]}:{hit[1]}" if hit else None

        stages.append(("decontaminate", decontaminate))
    if opts["correct"] or opts["golden"]:
        stages.append(("correct", lambda r: None if is_correct(r) else "not_correct"))
    if opts["golden"]:

        def flawless(r: dict[str, Any]) -> str | None:
            calm = r.get("calm")
            return (
                None if isinstance(calm, dict) and calm.get("flawless") is True else "not_flawless"
            )

        stages.append(("golden", flawless))
    if opts["max_tokens"] is not None:
        assert count_tokens is not None
        limit = opts["max_tokens"]
        stages.append(("max-tokens", lambda r: None if count_tokens(r) <= limit else "too_long"))
    return stages


def one_per_problem(
    records: Iterable[tuple[int, dict[str, Any]]],
    reject: Callable[[dict[str, Any], str, str], None],
) -> list[tuple[int, dict[str, Any]]]:
    """The shortest correct record of each problem (problems with none correct are dropped)."""
    best: dict[str, tuple[int, int, dict[str, Any]]] = {}
    for order, record in records:
        pid = str(record.get("id"))
        if not is_correct(record):
            reject(record, "one-per-problem", "not_correct")
            continue
        candidate = (length_of(record), order, record)
        if pid not in best:
            best[pid] = candidate
        elif candidate[:2] < best[pid][:2]:
            reject(best[pid][2], "one-per-problem", "not_shortest")
            best[pid] = candidate
        else:
            reject(record, "one-per-problem", "not_shortest")
    return sorted(((o, r) for _, o, r in best.values()), key=lambda x: x[0])


def sample(
    records: Iterable[tuple[int, dict[str, Any]]],
    n: int,
    seed: int,
    per_benchmark: bool,
    reject: Callable[[dict[str, Any], str, str], None],
) -> list[tuple[int, dict[str, Any]]]:
    """N records (per benchmark with per_benchmark), chosen by a seeded hash of (id, sample):
    the same choice whatever the input order, and memory bounded by N per stratum."""
    heaps: dict[str, list[tuple[int, int, int, dict[str, Any]]]] = defaultdict(list)
    for order, record in records:
        key = f"{seed}:{record.get('id')}:{record.get('sample')}".encode()
        rank = -int.from_bytes(
            hashlib.sha256(key).digest()[:8], "big"
        )  # max-heap of the N smallest hashes
        heap = heaps[bench_of(record) if per_benchmark else ""]
        item = (rank, -order, order, record)
        if len(heap) < n:
            heapq.heappush(heap, item)
        else:
            dropped = heapq.heappushpop(heap, item)
            reject(dropped[3], "sample", "not_sampled")
    chosen = [(order, record) for heap in heaps.values() for _, _, order, record in heap]
    return sorted(chosen, key=lambda x: x[0])


@dataclass
class Funnel:
    """in -> out per stage, by benchmark."""

    stages: list[str]
    counts: dict[str, dict[str, Counter]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = {s: {"in": Counter(), "out": Counter()} for s in ["input", *self.stages]}

    def seen(self, stage: str, record: dict[str, Any], passed: bool) -> None:
        self.counts[stage]["in"][bench_of(record)] += 1
        if passed:
            self.counts[stage]["out"][bench_of(record)] += 1

    def benchmarks(self) -> list[str]:
        """Every benchmark seen in the input."""
        return sorted(self.counts["input"]["in"])

    def lines(self) -> list[str]:
        benches = sorted({b for c in self.counts.values() for b in c["in"]})
        out = ["or-filter funnel (in -> out):"]
        for stage, c in self.counts.items():
            per = ", ".join(f"{b} {c['in'][b]}->{c['out'][b]}" for b in benches if c["in"][b])
            out.append(
                f"  {stage:<16} {sum(c['in'].values())} -> {sum(c['out'].values())}"
                + (f"  ({per})" if len(benches) > 1 else "")
            )
        return out


def unmatched_benchmarks(wanted: Iterable[str], funnel: Funnel) -> list[str]:
    """The `--benchmark` names that matched no input record (said on stderr, not silently
    giving an empty output)."""
    seen = {norm_bench(b) for b in funnel.benchmarks()}
    return [name for name in wanted if norm_bench(name) not in seen]


def run_stages(
    lines: Iterator[Any],
    stages: list[Stage],
    funnel: Funnel,
    reject: Callable[[dict[str, Any], str, str], None],
    on_bad: Callable[[Any, RecordError], None],
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records that pass every streaming stage, numbered in input order. A record a stage
    cannot judge (RecordError: e.g. no problem text to decontaminate) goes to `on_bad(line,
    error)`, neither kept nor counted as rejected."""
    for order, line in enumerate(lines):
        record = line.record
        funnel.seen("input", record, True)
        for name, decide in stages:
            try:
                reason = decide(record)
            except RecordError as err:
                on_bad(line, err)
                break
            funnel.seen(name, record, reason is None)
            if reason is not None:
                reject(record, name, reason)
                break
        else:
            yield order, record


def buffered_stages(opts: dict[str, Any]) -> list[str]:
    """The stages that see every record that got that far (so they run after the stream)."""
    on = {"one-per-problem": opts["one_per_problem"], "sample": opts["sample_n"] is not None}
    return [stage for stage, wanted in on.items() if wanted]


def run_buffered(
    passed: Iterable[tuple[Any, dict[str, Any]]],
    stages: list[str],
    opts: dict[str, Any],
    funnel: Funnel,
    reject: Callable[[dict[str, Any], str, str], None],
) -> list[tuple[Any, dict[str, Any]]]:
    """Apply the buffered stages in order to what passed the streaming ones, counting each."""
    kept = list(passed)
    for stage in stages:
        before = kept
        if stage == "one-per-problem":
            kept = one_per_problem(before, reject)
        else:
            kept = sample(before, opts["sample_n"], opts["seed"], opts["per_benchmark"], reject)
        ids = {id(r) for _, r in kept}
        for _, r in before:
            funnel.seen(stage, r, id(r) in ids)
    return kept
