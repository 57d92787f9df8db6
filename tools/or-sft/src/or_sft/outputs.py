"""What a run leaves next to its checkpoint: run.json (the stamp), the loss plot, and the
progress bar on stderr while it trains."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from or_common.records import TOOL_VERSION
from or_common.stamp import stamped

RUN_JSON = "run.json"
LOSS_PNG = "loss.png"


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in ("or-sft", "or-common", "torch", "transformers", "trl", "accelerate", "deepspeed"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def write_run_json(output_dir: str, stamp: dict[str, Any]) -> Path:
    """OUTPUT_DIR/run.json: the tool, the library versions, `stamp`, then the shared provenance
    (date, git commit, tool and scoring versions). No prompt version: the trajectories may come
    from any prompt (or-gen --prompt), and each record says its own in `gen.prompt_version`."""
    path = Path(output_dir) / RUN_JSON
    path.parent.mkdir(parents=True, exist_ok=True)
    stamp = stamped(
        {"tool": "or-sft", "tool_version": TOOL_VERSION, "versions": versions(), **stamp}
    )
    path.write_text(json.dumps(stamp, indent=2, default=str) + "\n")
    return path


def read_metrics(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_loss(metrics_path: Path, png: Path, title: str) -> Path | None:
    """Training loss (and learning rate) against the optimizer step, as a PNG: whole steps on
    the x axis, plain numbers (no offset such as `+1.192e1`) on both y axes."""
    rows = [r for r in read_metrics(metrics_path) if r.get("loss") is not None]
    if not rows:
        return None
    from matplotlib.ticker import FormatStrFormatter
    from or_common.figures import plain_axes, pyplot, save

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["loss"] for r in rows], marker="o" if len(rows) < 40 else None, color="C0")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (trained tokens)", color="C0")
    ax.set_title(title, loc="left")
    plain_axes(ax, integer_x=True)
    if any(r.get("lr") is not None for r in rows):
        lr_ax = ax.twinx()
        lr_ax.spines["right"].set_visible(True)
        lr_ax.grid(False)
        lr_ax.plot(steps, [r.get("lr") or 0 for r in rows], color="C1", alpha=0.6, linestyle="--")
        lr_ax.set_ylabel("learning rate", color="C1")
        lr_ax.yaxis.set_major_formatter(FormatStrFormatter("%.1e"))  # each tick says its value
    fig.tight_layout()
    save(fig, png)
    return png


class Progress:
    """Progress over optimizer steps on stderr, with the last loss and tokens/s: a rich bar on a
    terminal; otherwise (a log file, a pipe, the demo) a plain line when training starts, at most
    every `every` seconds after, and at the end, each with the time left. Off with -q; only the
    main process reports."""

    def __init__(
        self,
        enabled: bool,
        terminal: bool | None = None,
        every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        emit: Callable[[str], None] | None = None,
    ):
        self.enabled = enabled
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.every = every
        self.clock = clock
        self.emit = emit or (lambda line: print(line, file=sys.stderr, flush=True))
        self._bar: Any = None
        self._task: Any = None
        self._plain = False
        self.total = self.first = self.step = 0
        self._said = -1  # the step of the last line said
        self._t0 = self._last = 0.0
        self.extra = ""

    def start(self, total: int, done: int) -> None:
        if not self.enabled:
            return
        self.total, self.first, self.step = total, done, done
        self._t0 = self._last = self.clock()
        if not self.terminal:
            self._plain = True
            resumed = f", resumed at step {done}" if done else ""
            self.emit(f"or-sft: training {total} steps{resumed}")
            return
        from or_common.progress import SPEED_WINDOW
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
            # a step can take longer than rich's 30 s window, which then shows no time left
            speed_estimate_period=SPEED_WINDOW,
            get_time=self.clock,
        )
        self._bar.start()
        self._task = self._bar.add_task("train", total=total, completed=done, extra="")

    def advance(self, step: int) -> None:
        self.step = step
        if self._bar is not None:
            self._bar.update(self._task, completed=step)
        elif self._plain and self.clock() - self._last >= self.every:
            self._say()

    def note(self, row: dict[str, Any]) -> None:
        loss, tps = row.get("loss"), row.get("tokens_per_s")
        if loss is not None:
            self.extra = f"loss {loss:.4f} · {tps or 0:,.0f} tok/s"
        if self._bar is not None:
            self._bar.update(self._task, extra=self.extra)

    def left(self) -> float | None:
        """Seconds left at the pace of the steps done in this run so far."""
        done = self.step - self.first
        if done <= 0:
            return None
        return (self.clock() - self._t0) / done * max(self.total - self.step, 0)

    def line(self) -> str:
        from or_common.progress import clock_text

        parts = [f"or-sft: step {self.step}/{self.total}"]
        if self.extra:
            parts.append(self.extra)
        parts.append(f"{clock_text(self.clock() - self._t0)} elapsed")
        parts.append(f"{clock_text(self.left())} left")
        return " · ".join(parts)

    def _say(self) -> None:
        self._last, self._said = self.clock(), self.step
        self.emit(self.line())

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._plain:
            if self._said != self.step:
                self._say()
            self._plain = False
