"""Flaw distributions per benchmark (several runs side by side) and agreement of two annotations."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from typing import Any

from or_common.flaws import CATEGORIES
from or_common.jsonl import BadLine, read_records

CATEGORY_ORDER = ["code-utilization distrust", "lack of OR expertise", "protocol"]


def load(path: str, on_bad) -> list[dict[str, Any]]:
    """The annotated records (with a `flaws` object) of one file; `on_bad(BadLine)` hears of
    unreadable lines."""
    out = []
    for item in read_records([path]):
        if isinstance(item, BadLine):
            on_bad(item)
        elif isinstance(item.get("flaws"), dict) and not item["flaws"].get("error"):
            out.append(item)
    return out


def distribution(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per benchmark: mean flaws per trajectory by category and by trigger, share flawless."""
    groups: dict[str, list[list[int]]] = defaultdict(list)
    for r in records:
        groups[str(r.get("benchmark") or "unknown")].append(list(r["flaws"].get("triggers") or []))
    out = {}
    for bench in sorted(groups):
        rows = groups[bench]
        n = len(rows)
        triggers = Counter(t for row in rows for t in row)
        cats = Counter(CATEGORIES[t] for row in rows for t in row)
        out[bench] = {
            "trajectories": n,
            "correct_share": sum(1 for row in rows if not row) / n,
            "per_category": {c: cats[c] / n for c in CATEGORY_ORDER},
            "per_trigger": {str(t): triggers[t] / n for t in range(1, 8)},
        }
    return out


def to_markdown(runs: list[tuple[str, dict[str, Any]]]) -> str:
    header = ["run", "benchmark", "n", "flawless", *CATEGORY_ORDER, *[f"T{t}" for t in range(1, 8)]]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for label, dist in runs:
        for bench, m in dist.items():
            cells = [label, bench, str(m["trajectories"]), f"{100 * m['correct_share']:.1f}%"]
            cells += [f"{m['per_category'][c]:.2f}" for c in CATEGORY_ORDER]
            cells += [f"{m['per_trigger'][str(t)]:.2f}" for t in range(1, 8)]
            lines.append("| " + " | ".join(cells) + " |")
    return "mean flaws per trajectory\n\n" + "\n".join(lines)


def plot(runs: list[tuple[str, dict[str, Any]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benches = sorted({b for _, d in runs for b in d})
    fig, axes = plt.subplots(1, len(benches), figsize=(4 * len(benches), 3.5), squeeze=False)
    width = 0.8 / len(runs)
    for ax, bench in zip(axes[0], benches, strict=True):
        for i, (label, dist) in enumerate(runs):
            m = dist.get(bench)
            values = [m["per_category"][c] if m else 0 for c in CATEGORY_ORDER]
            ax.bar(
                [j + (i - (len(runs) - 1) / 2) * width for j in range(3)],
                values,
                width,
                label=label,
            )
        ax.set_xticks(range(3), ["distrust", "OR expertise", "protocol"])
        ax.set_title(bench)
        ax.set_ylabel("flaws per trajectory")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def agreement(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Instance-level agreement of annotation A against reference B, on shared (id, sample)."""
    key = lambda r: (str(r["id"]), r.get("sample"))  # noqa: E731
    ref = {key(r): set(r["flaws"].get("triggers") or []) for r in b}
    pairs = [(set(r["flaws"].get("triggers") or []), ref[key(r)]) for r in a if key(r) in ref]
    per_trigger = {}
    for t in range(1, 8):
        tp = sum(1 for x, y in pairs if t in x and t in y)
        fp = sum(1 for x, y in pairs if t in x and t not in y)
        fn = sum(1 for x, y in pairs if t not in x and t in y)
        if tp + fp + fn:
            per_trigger[str(t)] = {
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / (tp + fn) if tp + fn else None,
                "support": tp + fn,
            }
    return {
        "matched": len(pairs),
        "only_in_a": len(a) - len(pairs),
        "only_in_b": len(b) - len(pairs),
        "exact_set_match": sum(1 for x, y in pairs if x == y) / len(pairs) if pairs else None,
        "same_label": sum(1 for x, y in pairs if bool(x) == bool(y)) / len(pairs)
        if pairs
        else None,
        "per_trigger": per_trigger,
    }


def label_of(path: str) -> str:
    if path == "-":
        return "stdin"
    return os.path.basename(path).removesuffix(".gz").removesuffix(".jsonl")
