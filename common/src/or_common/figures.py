"""What every PNG the tools write shares: one quiet paper-like style, plain numbers on the axes
(no `+1.192e1` offsets, whole steps on step axes), a title that says where the numbers came
from, and a check that no two labels overlap. matplotlib is imported inside the functions
(only the tools that plot depend on it)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.alpha": 0.3,
    "axes.axisbelow": True,
    "axes.formatter.useoffset": False,
    "axes.formatter.limits": (-4, 6),
}
#: colour-blind safe (Okabe-Ito), one per run
COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, with the shared style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def plain_axes(ax: Any, integer_x: bool = False) -> None:
    """Numbers as they are: no offset and no scientific notation on either axis; with
    `integer_x`, ticks only at whole numbers (steps, epochs)."""
    from matplotlib.ticker import MaxNLocator, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if isinstance(axis.get_major_formatter(), ScalarFormatter):
            axis.get_major_formatter().set_useOffset(False)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def source_line(files: Iterable[str], width_in: float) -> str:
    """`data: a.jsonl, b.jsonl` (base names), wrapped to lines that fit `width_in` inches of a
    title at the style's font size."""
    import textwrap

    names = sorted({Path(f).name for f in files if f})
    text = "data: " + (", ".join(names) if names else "unknown")
    lines = textwrap.wrap(text, max(30, int(width_in * 14)), break_on_hyphens=False)
    return "\n".join(lines[:3]) + ("…" if len(lines) > 3 else "")


def overlapping_texts(fig: Any) -> list[tuple[str, str]]:
    """Pairs of visible, non-empty texts of `fig` (titles, tick and axis labels, value labels,
    legend entries) whose boxes overlap once drawn: what a reader could not read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed figure has lost its own canvas
    canvas.draw()
    renderer = canvas.get_renderer()
    # labels of ticks outside the view: matplotlib keeps but never draws them
    hidden: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            low, high = sorted(axis.get_view_interval())
            slack = (high - low) * 1e-9
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not low - slack <= tick.get_loc() <= high + slack:
                    hidden.update((id(tick.label1), id(tick.label2)))
    texts = [
        t
        for t in fig.findobj(lambda a: a.__class__.__name__ in ("Text", "Annotation"))
        if t.get_visible() and t.get_text().strip() and id(t) not in hidden
    ]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    pairs = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            if box_a.width and box_b.width and _overlap(box_a, box_b):
                pairs.append((a, b))
    return pairs


def _overlap(a: Any, b: Any, slack: float = 0.5) -> bool:
    return (
        a.x0 + slack < b.x1 and b.x0 + slack < a.x1 and a.y0 + slack < b.y1 and b.y0 + slack < a.y1
    )


def save(fig: Any, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def legend_below(fig: Any, ax: Any, width_in: float) -> None:
    """One legend for the figure, under the plots (never over a bar), as many entries per row as
    fit the figure's width."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    per_row = max(1, int(width_in * 14) // (max(len(label) for label in labels) + 6))
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(labels), per_row),
        frameon=False,
    )
