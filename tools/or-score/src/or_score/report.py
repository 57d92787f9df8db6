"""Accuracy reports over scored runs: per benchmark and macro-averaged, several runs side by
side (the layout of the paper's main table), as terminal table, markdown, JSON or PNG."""

from __future__ import annotations

import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from or_common.records import RecordError, completion_tokens
from or_common.scoring import SCORING_VERSION, current_score

from .scorer import REASONS, check_scorable

#: The paper's headline benchmarks, in its column order; others follow alphabetically.
HEADLINE = ("nl4opt", "mamo-easy", "mamo-complex", "industryor", "optmath")
PYTHON_FENCE = "```python"


@dataclass(slots=True)
class Sample:
    sample: int | None
    correct: bool | None
    prediction: Any
    reason: str
    tokens: int | None
    blocks: int
    executions: int


@dataclass
class Run:
    """Every scored sample of one run file, grouped by benchmark and problem."""

    source: str
    label: str
    protocol: str
    problems: dict[str, dict[str, list[Sample]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list))
    )
    models: Counter = field(default_factory=Counter)
    data_files: Counter = field(default_factory=Counter)

    def add(self, record: dict[str, Any]) -> None:
        check_scorable(record)
        score = current_score(record, self.protocol)  # a stale or older score is redone
        bench = str(record.get("benchmark") or "unknown")
        sample = record.get("sample")
        self.problems[bench][str(record["id"])].append(
            Sample(
                sample if isinstance(sample, int) and not isinstance(sample, bool) else None,
                score["correct"],
                score["prediction"],
                score["reason"],
                *usage(record),
            )
        )
        gen = record.get("gen")
        if isinstance(gen, dict) and gen.get("model"):
            self.models[str(gen["model"])] += 1
        if record.get("source"):
            self.data_files[data_version(str(record["source"]))] += 1


def data_version(source: str) -> str:
    """`owner/repo@<sha>:path/file.jsonl` -> `owner/repo@<sha7>:file.jsonl`, the data's version."""
    repo, _, rest = source.partition("@")
    commit, _, path = rest.partition(":")
    if not rest:
        return source
    return f"{repo}@{commit[:7]}:{os.path.basename(path)}"


def usage(record: dict[str, Any]) -> tuple[int | None, int, int]:
    """(completion tokens, code blocks written, executions run) of one trajectory."""
    flow = record.get("flow") if isinstance(record.get("flow"), list) else []
    blocks = sum(
        seg.get("text", "").count(PYTHON_FENCE)
        for seg in flow
        if isinstance(seg, dict) and seg.get("role") != "executor"
    )
    executions = sum(
        1
        for seg in flow
        if isinstance(seg, dict)
        and seg.get("role") == "executor"
        and seg.get("status") != "skipped"
    )
    return completion_tokens(record), blocks, executions


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator of pass@k from n samples with c correct (Chen et al., 2021)."""
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _vote_key(prediction: Any) -> Any:
    if isinstance(prediction, float):
        return float(f"{prediction:.6g}")
    return prediction


def first_k(samples: list[Sample], k: int) -> list[Sample]:
    """The first k samples by `sample` index (input order among equal or missing indices)."""
    order = sorted(
        range(len(samples)),
        key=lambda i: (samples[i].sample is None, samples[i].sample or 0, i),
    )
    return [samples[i] for i in order[:k]]


def majority_correct(samples: list[Sample]) -> bool:
    """The most frequent prediction among `samples` (the earliest wins ties) decides."""
    votes: Counter = Counter()
    verdict: dict[Any, bool] = {}
    for s in samples:
        if s.prediction is None:
            continue
        key = _vote_key(s.prediction)
        votes[key] += 1
        verdict.setdefault(key, bool(s.correct))
    if not votes:
        return False
    top = max(votes.values())
    winner = next(k for k in votes if votes[k] == top)
    return verdict[winner]


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


def benchmark_metrics(problems: dict[str, list[Sample]], k: int | None) -> dict[str, Any]:
    scored = {pid: s for pid, s in problems.items() if any(x.correct is not None for x in s)}
    samples = [x for s in problems.values() for x in s]
    n_min = min((len(s) for s in scored.values()), default=0)
    k = k or n_min
    per_problem = []
    passk = []
    maj = []
    for s in scored.values():
        judged = [x for x in s if x.correct is not None]
        c = sum(1 for x in judged if x.correct)
        per_problem.append(c / len(judged))
        if k and len(judged) >= k:
            passk.append(pass_at_k(len(judged), c, k))
            # maj@k votes over the first k samples by index, never over all n: with n > k
            # a vote over every sample would report maj@n under the name maj@k.
            maj.append(majority_correct(first_k(judged, k)))
    reasons = Counter(x.reason for x in samples)
    return {
        "problems": len(scored),
        "samples": sum(len(s) for s in scored.values()),
        "samples_per_problem": n_min,
        "pass@1": _mean(per_problem),
        "k": k,
        "pass@k": _mean(passk),
        "maj@k": _mean(float(m) for m in maj),
        "reasons": {r: reasons[r] for r in REASONS if reasons[r]},
        "mean_completion_tokens": _mean(x.tokens for x in samples if x.tokens is not None),
        "mean_code_blocks": _mean(x.blocks for x in samples),
        "mean_executions": _mean(x.executions for x in samples),
        "no_reference": sum(1 for s in problems.values() if all(x.correct is None for x in s)),
    }


def bench_order(names: Iterable[str]) -> list[str]:
    def key(name: str) -> tuple[int, str]:
        norm = name.lower().replace("_", "-").replace(" ", "-")
        return (HEADLINE.index(norm), "") if norm in HEADLINE else (len(HEADLINE), norm)

    return sorted(set(names), key=key)


def summarize(run: Run, k: int | None = None) -> dict[str, Any]:
    benches = {b: benchmark_metrics(run.problems[b], k) for b in bench_order(run.problems)}
    judged = [m for m in benches.values() if m["problems"]]
    macro = {
        metric: _mean(m[metric] for m in judged if m[metric] is not None)
        for metric in ("pass@1", "pass@k", "maj@k")
    }
    return {
        "label": run.label,
        "file": run.source,
        "protocol": run.protocol,
        "scoring_version": SCORING_VERSION,
        "models": sorted(run.models),
        "data_files": sorted(run.data_files),
        "benchmarks": benches,
        "macro": macro,
    }


def load_run(path: str, protocol: str, label: str | None, on_bad) -> Run:
    """Read one run file (`-` for stdin), scoring records that lack a current score under
    `protocol`. `on_bad(BadLine)` hears of every line that cannot be used."""
    from or_common.jsonl import BadLine, read_lines, source_name

    name = label or (
        "stdin"
        if path == "-"
        else os.path.basename(path).removesuffix(".gz").removesuffix(".jsonl")
    )
    run = Run(source=source_name(path), label=name, protocol=protocol)
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
    return run


# -- rendering ----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _delta(x: float | None, base: float | None) -> str:
    if x is None or base is None:
        return ""
    return f" ({100 * (x - base):+.1f})"


def headline_rows(
    summaries: list[dict[str, Any]], metric: str = "pass@1"
) -> tuple[list[str], list[list[str]]]:
    """Rows = runs, columns = benchmarks + macro; later runs show their delta to the first."""
    benches = bench_order(b for s in summaries for b in s["benchmarks"])
    header = ["run", *benches, "macro"]
    base = summaries[0]
    rows = []
    for i, s in enumerate(summaries):
        row = [s["label"]]
        for b in benches:
            v = s["benchmarks"].get(b, {}).get(metric)
            ref = base["benchmarks"].get(b, {}).get(metric)
            row.append(_pct(v) + (_delta(v, ref) if i else ""))
        v, ref = s["macro"][metric], base["macro"][metric]
        row.append(_pct(v) + (_delta(v, ref) if i else ""))
        rows.append(row)
    return header, rows


def detail_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    k = next((m["k"] for m in summary["benchmarks"].values() if m["k"]), None)
    header = [
        "benchmark",
        "problems",
        "n",
        "pass@1",
        f"pass@{k}",
        f"maj@{k}",
        "tokens",
        "blocks",
        "execs",
        "failures",
    ]
    rows = []
    for b, m in summary["benchmarks"].items():
        fails = ", ".join(f"{r} {c}" for r, c in m["reasons"].items() if r != "correct")
        tokens = (
            "–" if m["mean_completion_tokens"] is None else f"{m['mean_completion_tokens']:.0f}"
        )
        rows.append(
            [
                b,
                str(m["problems"]),
                str(m["samples_per_problem"]),
                _pct(m["pass@1"]),
                _pct(m["pass@k"]),
                _pct(m["maj@k"]),
                tokens,
                f"{m['mean_code_blocks'] or 0:.2f}",
                f"{m['mean_executions'] or 0:.2f}",
                fails or "–",
            ]
        )
    macro = summary["macro"]
    rows.append(
        [
            "macro",
            "",
            "",
            _pct(macro["pass@1"]),
            _pct(macro["pass@k"]),
            _pct(macro["maj@k"]),
            "",
            "",
            "",
            "",
        ]
    )
    return header, rows


def stamp(summary: dict[str, Any]) -> str:
    models = ", ".join(summary["models"]) or "unknown model"
    data = ", ".join(summary["data_files"]) or "unknown data"
    return f"{summary['label']}: file {summary['file']} · model {models} · data {data} · protocol {summary['protocol']} ({summary['scoring_version']})"


def to_markdown(summaries: list[dict[str, Any]]) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    out = [
        f"## pass@1 (%), protocol {summaries[0]['protocol']}",
        "",
        table(*headline_rows(summaries)),
        "",
    ]
    for s in summaries:
        out += [f"### {s['label']}", "", stamp(s), "", table(*detail_rows(s)), ""]
    return "\n".join(out)


def print_tables(summaries: list[dict[str, Any]], file) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=max(120, Console(file=file).width))

    def table(title: str, header: list[str], rows: list[list[str]]) -> Table:
        t = Table(title=title, title_justify="left")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 or h == "failures" else "right")
        for r in rows:
            t.add_row(*r)
        return t

    console.print(
        table(f"pass@1 (%), protocol {summaries[0]['protocol']}", *headline_rows(summaries))
    )
    for s in summaries:
        console.print(table(stamp(s), *detail_rows(s)))


def plot(summaries: list[dict[str, Any]], path: str) -> None:
    """A grouped bar chart of pass@1 per benchmark (and macro), one bar per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = bench_order(b for s in summaries for b in s["benchmarks"]) + ["macro"]
    width = 0.8 / len(summaries)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(benches)), 4))
    for i, s in enumerate(summaries):
        values = [
            100 * ((s["macro"] if b == "macro" else s["benchmarks"].get(b, {})).get("pass@1") or 0)
            for b in benches
        ]
        xs = [j + (i - (len(summaries) - 1) / 2) * width for j in range(len(benches))]
        bars = ax.bar(xs, values, width, label=s["label"])
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(benches)), benches, rotation=20)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"pass@1 by benchmark · protocol {summaries[0]['protocol']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
