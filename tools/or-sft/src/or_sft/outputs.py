"""What a run leaves next to its checkpoint: run.json (the stamp), the loss plot, and the
progress bar on stderr while it trains."""

from __future__ import annotations

import hashlib
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from or_common.jsonl import STDIN
from or_common.records import TOOL_VERSION

RUN_JSON = "run.json"
LOSS_PNG = "loss.png"


def sha256(path: str) -> str | None:
    if path == STDIN:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("or-sft", "or-common", "torch", "transformers", "trl", "accelerate", "deepspeed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_json(output_dir: str, stamp: dict[str, Any]) -> Path:
    path = Path(output_dir) / RUN_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = {"tool": "or-sft", "tool_version": TOOL_VERSION, "versions": versions(), **stamp}
    path.write_text(json.dumps(stamp, indent=2, default=str) + "\n")
    return path


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(metrics_path: Path, png: Path, title: str) -> Path | None:
    """Training loss (and learning rate) against the step, as a PNG."""
    rows = [r for r in read_metrics(metrics_path) if r.get("loss") is not None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], marker="o" if len(rows) < 40 else None, color="C0")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (trained tokens)", color="C0")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if any(r.get("lr") is not None for r in rows):
        lr_ax = ax.twinx()
        lr_ax.plot(steps, [r.get("lr") or 0 for r in rows], color="C1", alpha=0.6, linestyle="--")
        lr_ax.set_ylabel("learning rate", color="C1")
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return png


class Progress:
    """A rich progress bar on stderr over optimizer steps, with the last loss and tokens/s.
    Off when stderr is not a terminal or with -q; only the main process draws it."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self._bar = Bar(
            TextColumn("[bold]or-sft"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("steps · {task.fields[extra]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, completed=done, extra="")

    def advance(self, step: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=step)

    def note(self, row: dict[str, Any]) -> None:
        if self._bar is not None:
            loss, tps = row.get("loss"), row.get("tokens_per_s")
            self._bar.update(self._task, extra=f"loss {loss:.4f} · {tps or 0:,.0f} tok/s")

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
