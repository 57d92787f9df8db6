"""Accuracy reports over scored runs: per benchmark and macro-averaged, several runs side by
side (the layout of the paper's main table), as terminal table, markdown, JSON or PNG.

Each pass@1 comes with its standard error over problems (the sample standard deviation of the
per-problem pass@1 divided by the square root of the number of problems, as
lm-evaluation-harness prints `stderr`); the macro average's is the root of the summed squares
over the number of benchmarks."""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from or_common.scoring import SCORING_VERSION

from .runs import Run, Sample, data_version, deltas, load_run, usage  # noqa: F401  (re-exported)
from .scorer import REASONS

#: The paper's headline benchmarks, in its column order; others follow alphabetically.
HEADLINE = ("nl4opt", "mamo-easy", "mamo-complex", "industryor", "optmath")
SE_NOTE = (
    "±se: standard error of pass@1 over problems (sample sd / √problems, as"
    " lm-evaluation-harness); macro: √(Σ se²) / benchmarks"
)


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


def standard_error(values: list[float]) -> float | None:
    """Sample standard deviation / √n (None for fewer than two values)."""
    n = len(values)
    if n < 2:
        return None
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


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
    formats = Counter(x.format for x in samples if x.format not in (None, "ok"))
    return {
        "problems": len(scored),
        "samples": sum(len(s) for s in scored.values()),
        "samples_per_problem": n_min,
        "pass@1": _mean(per_problem),
        "pass@1_se": standard_error(per_problem),
        "k": k,
        "pass@k": _mean(passk),
        "maj@k": _mean(float(m) for m in maj),
        "reasons": {r: reasons[r] for r in REASONS if reasons[r]},
        "formats": dict(sorted(formats.items())),
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


def failures(run: Run) -> list[dict[str, Any]]:
    """Every judged sample that is not correct: benchmark, id, sample, reason, prediction."""
    return [
        {
            "benchmark": bench,
            "id": pid,
            "sample": s.sample,
            "reason": s.reason,
            "prediction": s.prediction,
            "format": s.format,
        }
        for bench in bench_order(run.problems)
        for pid, samples in run.problems[bench].items()
        for s in samples
        if s.correct is False
    ]


def summarize(run: Run, k: int | None = None, with_failures: bool = False) -> dict[str, Any]:
    benches = {b: benchmark_metrics(run.problems[b], k) for b in bench_order(run.problems)}
    judged = [m for m in benches.values() if m["problems"]]
    macro = {
        metric: _mean(m[metric] for m in judged if m[metric] is not None)
        for metric in ("pass@1", "pass@k", "maj@k")
    }
    ses = [m["pass@1_se"] for m in judged]
    macro["pass@1_se"] = (
        math.sqrt(sum(se**2 for se in ses)) / len(ses)
        if ses and all(se is not None for se in ses)
        else None
    )
    summary = {
        "label": run.label,
        "file": run.source,
        "protocol": run.protocol,
        "scoring_version": SCORING_VERSION,
        "models": sorted(run.models),
        "data_files": sorted(run.data_files),
        "benchmarks": benches,
        "macro": macro,
    }
    if with_failures:
        summary["failures"] = failures(run)
    return summary


# -- rendering ----------------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _signed(delta: float | None) -> str:
    return "" if delta is None else f" ({100 * delta:+.1f})"


def one_protocol(summaries: list[dict[str, Any]]) -> str | None:
    protocols = {s["protocol"] for s in summaries}
    return protocols.pop() if len(protocols) == 1 else None


def headline_rows(
    summaries: list[dict[str, Any]], metric: str = "pass@1"
) -> tuple[list[str], list[list[str]]]:
    """Rows = runs, columns = benchmarks + macro; later runs show their delta to the first
    (over the problems both judged: `summary["delta"]`). A `protocol` column appears when the
    runs were judged under different protocols."""
    benches = bench_order(b for s in summaries for b in s["benchmarks"])
    several = one_protocol(summaries) is None
    header = ["run", *(["protocol"] if several else []), *benches, "macro"]
    rows = []
    for i, s in enumerate(summaries):
        row = [s["label"], *([s["protocol"]] if several else [])]
        delta = s.get("delta") or {}
        for b in benches:
            v = s["benchmarks"].get(b, {}).get(metric)
            d = delta.get(b, {}).get(metric) if i else None
            row.append(_pct(v) + _signed(d if v is not None else None))
        d = delta.get("macro", {}).get(metric) if i else None
        row.append(_pct(s["macro"][metric]) + _signed(d))
        rows.append(row)
    return header, rows


def detail_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per benchmark and the macro row; with k = 1 only one pass@1 column (pass@1,
    pass@1 and maj@1 are the same number)."""
    k = next((m["k"] for m in summary["benchmarks"].values() if m["k"]), None)
    at_k = [f"pass@{k}", f"maj@{k}"] if k != 1 else []
    header = ["benchmark", "problems", "n", "pass@1", "±se", *at_k]
    header += ["tokens", "blocks", "execs", "failures", "format"]
    rows = []
    for b, m in summary["benchmarks"].items():
        fails = ", ".join(f"{r} {c}" for r, c in m["reasons"].items() if r != "correct")
        formats = ", ".join(f"{f} {c}" for f, c in m["formats"].items())
        tokens = (
            "–" if m["mean_completion_tokens"] is None else f"{m['mean_completion_tokens']:.0f}"
        )
        rows.append(
            [
                b,
                str(m["problems"]),
                str(m["samples_per_problem"]),
                _pct(m["pass@1"]),
                _pct(m["pass@1_se"]),
                *([_pct(m["pass@k"]), _pct(m["maj@k"])] if at_k else []),
                tokens,
                f"{m['mean_code_blocks'] or 0:.2f}",
                f"{m['mean_executions'] or 0:.2f}",
                fails or "–",
                formats or "–",
            ]
        )
    macro = summary["macro"]
    rows.append(
        [
            "macro",
            "",
            "",
            _pct(macro["pass@1"]),
            _pct(macro["pass@1_se"]),
            *([_pct(macro["pass@k"]), _pct(macro["maj@k"])] if at_k else []),
            *[""] * 5,
        ]
    )
    return header, rows


def failure_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["benchmark", "id", "sample", "reason", "prediction", "format"]
    rows = [
        [
            f["benchmark"],
            str(f["id"]),
            "–" if f["sample"] is None else str(f["sample"]),
            f["reason"],
            "–" if f["prediction"] is None else str(f["prediction"]),
            f["format"] or "–",
        ]
        for f in summary.get("failures", [])
    ]
    return header, rows


def stamp(summary: dict[str, Any]) -> str:
    models = ", ".join(summary["models"]) or "unknown model"
    data = ", ".join(summary["data_files"]) or "unknown data"
    return f"{summary['label']}: file {summary['file']} · model {models} · data {data} · protocol {summary['protocol']} ({summary['scoring_version']})"


def title(summaries: list[dict[str, Any]]) -> str:
    protocol = one_protocol(summaries)
    return f"pass@1 (%), protocol {protocol}" if protocol else "pass@1 (%), protocol per run"


def to_markdown(summaries: list[dict[str, Any]]) -> str:
    def table(header: list[str], rows: list[list[str]]) -> str:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)

    out = [f"## {title(summaries)}", "", table(*headline_rows(summaries)), ""]
    for s in summaries:
        out += [f"### {s['label']}", "", stamp(s), "", table(*detail_rows(s)), ""]
        if "failures" in s:
            out += [f"#### failures of {s['label']}", "", table(*failure_rows(s)), ""]
    out += [SE_NOTE, ""]
    return "\n".join(out)


def print_tables(summaries: list[dict[str, Any]], file) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file, width=max(120, Console(file=file).width))

    def table(title: str, header: list[str], rows: list[list[str]]) -> Table:
        t = Table(title=title, title_justify="left")
        for i, h in enumerate(header):
            t.add_column(h, justify="left" if i == 0 or h in ("failures", "format") else "right")
        for r in rows:
            t.add_row(*r)
        return t

    console.print(table(title(summaries), *headline_rows(summaries)))
    for s in summaries:
        console.print(table(stamp(s), *detail_rows(s)))
        if "failures" in s:
            console.print(table(f"failures of {s['label']}", *failure_rows(s)))
    console.print(SE_NOTE, markup=False, highlight=False)


def figure(summaries: list[dict[str, Any]]) -> Any:
    """Grouped bars of pass@1 per benchmark (and macro), one colour per run, each bar's value
    written vertically above it (labels of neighbouring bars never meet), the legend under the
    chart, the protocol and the data files in the title."""
    from or_common.figures import COLORS, legend_below, pyplot, source_line

    plt = pyplot()
    benches = bench_order(b for s in summaries for b in s["benchmarks"]) + ["macro"]
    n = len(summaries)
    width = 0.8 / n
    width_in = max(6.5, 1.0 + len(benches) * max(1.2, 0.3 * n))
    fig, ax = plt.subplots(figsize=(width_in, 4.2))
    for i, s in enumerate(summaries):
        points = [
            (j + (i - (n - 1) / 2) * width, 100 * value)
            for j, b in enumerate(benches)
            # a benchmark with no judged problem in this run gets no bar (not a zero)
            if (value := (s["macro"] if b == "macro" else s["benchmarks"].get(b, {})).get("pass@1"))
            is not None
        ]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.bar(xs, ys, width * 0.92, color=COLORS[i % len(COLORS)], label=s["label"])
        for x, y in points:
            ax.text(x, y + 1.5, f"{y:.1f}", rotation=90, ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(benches)), benches)
    ax.set_xlim(-0.6, len(benches) - 0.4)
    ax.axvline(len(benches) - 1.5, color="0.6", linewidth=0.8, linestyle=":")
    ax.set_ylim(0, 118)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("pass@1 (%)")
    protocols = ", ".join(sorted({s["protocol"] for s in summaries}))
    files = [f for s in summaries for f in s["data_files"]]
    ax.set_title(
        f"pass@1 by benchmark · protocol {protocols} ({summaries[0]['scoring_version']})\n"
        + source_line(files, width_in),
        loc="left",
    )
    legend_below(fig, ax, width_in)
    fig.tight_layout()
    return fig


def plot(summaries: list[dict[str, Any]], path: str) -> None:
    """Save `figure(summaries)` as a PNG."""
    from or_common.figures import save

    save(figure(summaries), path)


def add_deltas(
    runs: list[Run], summaries: list[dict[str, Any]], warn: Callable[[str], None]
) -> None:
    """Each run after the first gets `delta`: pass@1 against the first, per benchmark and macro,
    over the problems both judged (what they do not share is warned of)."""
    for run, summary in zip(runs[1:], summaries[1:], strict=True):
        by_bench, warnings = deltas(runs[0], run)
        for warning in warnings:
            warn(warning)
        if by_bench:
            macro = sum(d["pass@1"] for d in by_bench.values()) / len(by_bench)
            by_bench["macro"] = {"pass@1": macro, "benchmarks": len(by_bench)}
        summary["delta"] = by_bench


def emit(summaries: list[dict[str, Any]], fmt: str) -> None:
    """Write the report: json (also `table` when stdout is a pipe: data on stdout, the table on
    stderr), markdown, or the table on the terminal. A closed pipe ends it quietly."""
    try:
        if fmt == "json" or (fmt == "table" and not sys.stdout.isatty()):
            document = {"protocol": one_protocol(summaries), "runs": summaries}
            sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        if fmt == "markdown":
            sys.stdout.write(to_markdown(summaries) + "\n")
        if fmt == "table":
            print_tables(summaries, sys.stdout if sys.stdout.isatty() else sys.stderr)
        sys.stdout.flush()
    except BrokenPipeError:
        from or_common.cli import silence_stdout

        silence_stdout()
