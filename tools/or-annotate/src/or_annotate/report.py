"""Flaw distributions per benchmark (several runs side by side) and agreement of two annotations."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from or_common.flaws import CATEGORIES, TRIGGER_NAMES
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


def figure(
    runs: list[tuple[str, dict[str, Any]]], title: str = "", files: Sequence[str] = ()
) -> Any:
    """One panel per benchmark, all seven triggers by name on a shared axis (flaws per
    trajectory, the same scale in every panel), one colour per run, each non-zero bar's value at
    its end; a run without flaws shows empty bars on that same scale, not a -0.04..0.04 axis."""
    from matplotlib.ticker import MaxNLocator
    from or_common.figures import COLORS, legend_below, plain_axes, pyplot, source_line

    plt = pyplot()
    benches = sorted({b for _, d in runs for b in d})
    top = max(
        (m["per_trigger"][str(t)] for _, d in runs for m in d.values() for t in range(1, 8)),
        default=0.0,
    )
    n = len(runs)
    height = 0.8 / n
    width_in = 2.0 + 2.3 * len(benches)
    fig, axes = plt.subplots(
        1,
        len(benches),
        figsize=(width_in, 1.2 + 7 * max(0.32, 0.16 * n)),
        sharey=True,
        sharex=True,
        squeeze=False,
    )
    names = [f"T{t} {TRIGGER_NAMES[t]}" for t in range(1, 8)]
    for ax, bench in zip(axes[0], benches, strict=True):
        for i, (label, dist) in enumerate(runs):
            m = dist.get(bench)
            values = [m["per_trigger"][str(t)] if m else 0.0 for t in range(1, 8)]
            ys = [t + (i - (n - 1) / 2) * height for t in range(7)]
            ax.barh(ys, values, height * 0.9, color=COLORS[i % len(COLORS)], label=label)
            for y, v in zip(ys, values, strict=True):
                if v:
                    ax.text(v, y, f" {v:.2f}", va="center", ha="left", fontsize=6.5)
        count = ", ".join(str(d[bench]["trajectories"]) if bench in d else "–" for _, d in runs)
        ax.set_title(f"{bench} (n = {count})", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.grid(axis="y", visible=False)
        for between in (2.5, 5.5):  # distrust | OR expertise | protocol
            ax.axhline(between, color="0.75", linewidth=0.6, linestyle=":")
        plain_axes(ax)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
    axes[0][0].set_yticks(range(7), names)
    axes[0][0].invert_yaxis()
    axes[0][0].set_xlim(0, max(top * 1.3, 0.1))
    for ax in axes[0]:
        ax.set_xlabel("flaws per trajectory")
    fig.suptitle(
        (title or "Flaw triggers per trajectory") + "\n" + source_line(files, width_in),
        x=0.01,
        ha="left",
        fontsize=10,
    )
    legend_below(fig, axes[0][0], width_in)
    fig.tight_layout(w_pad=2.5)  # the last tick of a panel never meets the next panel's first
    return fig


def plot(
    runs: list[tuple[str, dict[str, Any]]], path: str, title: str = "", files: Sequence[str] = ()
) -> None:
    """Save `figure(...)` as a PNG."""
    from or_common.figures import save

    save(figure(runs, title, files), path)


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
