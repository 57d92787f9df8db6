"""Per-step metrics of a GRPO run and the paper's behaviour curves.

verl logs its own step metrics (through its `file` logger, to OUT/verl-metrics-<launch>.jsonl here) but
knows nothing of code blocks or executions. The agent loop therefore appends one line per
trajectory to OUT/rollouts/<host>-<pid>.jsonl (step, split, correctness, code blocks,
executions, execution statuses, response tokens, finish). `build_metrics` joins both into
OUT/metrics.jsonl, one line per step:

    {"step": 3, "accuracy": 0.41, "reward": 0.41, "code_blocks": 1.6, "executions": 1.5,
     "response_tokens": 5120.0, "truncated": 0.02, "exec_statuses": {"ok": 0.8, ...},
     "trajectories": 512, "val_accuracy": 0.52, "val": {"nl4opt": 0.8, ...}, "verl": {...}}

`plot_runs` draws accuracy, code blocks and response length per step for one or more runs.
Only the standard library is imported here (matplotlib inside `plot_runs`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

ROLLOUTS_DIR = "rollouts"
METRICS = "metrics.jsonl"
#: verl's own figures kept per step (the rest of its ~100 keys stay in verl-metrics.jsonl).
VERL_KEYS = (
    "critic/score/mean",
    "response_length/mean",
    "response_length/clip_ratio",
    "actor/entropy",
    "actor/pg_loss",
    "actor/grad_norm",
    "timing_s/step",
)

_lock = threading.Lock()
_files: dict[str, Any] = {}


def log_trajectory(directory: str, row: dict[str, Any]) -> None:
    """Append one trajectory's line to this process's file under `directory` (flushed)."""
    path = os.path.join(directory, f"{socket.gethostname()}-{os.getpid()}.jsonl")
    line = json.dumps(row, separators=(",", ":")) + "\n"
    with _lock:
        handle = _files.get(path)
        if handle is None:
            os.makedirs(directory, exist_ok=True)
            handle = _files[path] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        handle.write(line)
        handle.flush()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a killed run
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    statuses: dict[str, int] = defaultdict(int)
    for row in rows:
        for status, count in (row.get("exec_statuses") or {}).items():
            statuses[status] += count
    executions = sum(statuses.values())
    return {
        "accuracy": _mean([float(r.get("correct") or 0) for r in rows]),
        "code_blocks": _mean([float(r.get("code_blocks") or 0) for r in rows]),
        "executions": _mean([float(r.get("executions") or 0) for r in rows]),
        "response_tokens": _mean([float(r.get("response_tokens") or 0) for r in rows]),
        "truncated": _mean([1.0 if r.get("finish") == "length" else 0.0 for r in rows]),
        "exec_statuses": {k: v / executions for k, v in sorted(statuses.items())}
        if executions
        else {},
        "trajectories": len(rows),
    }


def build_metrics(out: str | Path) -> list[dict[str, Any]]:
    """One record per step from OUT's trajectory logs and verl's file log; also written to
    OUT/metrics.jsonl. Safe to call while the run is going on."""
    out = Path(out)
    # (split, step) -> launch -> rows; a step replayed after a resume keeps its latest launch
    seen: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for path in sorted((out / ROLLOUTS_DIR).glob("*.jsonl")):
        for row in _read_jsonl(path):
            step = row.get("step")
            if isinstance(step, int):
                split = "val" if row.get("split") == "val" else "train"
                seen[(split, step)][str(row.get("launch") or "")].append(row)
    train: dict[int, list[dict[str, Any]]] = {}
    val: dict[int, list[dict[str, Any]]] = {}
    for (split, step), launches in seen.items():
        (val if split == "val" else train)[step] = launches[max(launches)]
    verl: dict[int, dict[str, Any]] = {}
    for path in sorted(out.glob("verl-metrics*.jsonl")):  # launches sort by their time stamp
        for row in _read_jsonl(path):
            if isinstance(row.get("step"), int) and isinstance(row.get("data"), dict):
                verl[row["step"]] = row["data"]
    records = []
    for step in sorted(set(train) | set(val) | set(verl)):
        record: dict[str, Any] = {"step": step}
        if train.get(step):
            record.update(_summary(train[step]))
            record["reward"] = record["accuracy"]  # the reward is binary: 1 iff correct
        if val.get(step):
            rows = val[step]
            record["val_accuracy"] = _mean([float(r.get("correct") or 0) for r in rows])
            by_source: dict[str, list[float]] = defaultdict(list)
            for r in rows:
                by_source[str(r.get("data_source"))].append(float(r.get("correct") or 0))
            record["val"] = {k: _mean(v) for k, v in sorted(by_source.items())}
            record["val_code_blocks"] = _mean([float(r.get("code_blocks") or 0) for r in rows])
        if step in verl:
            record["verl"] = {k: verl[step][k] for k in VERL_KEYS if k in verl[step]}
        records.append(record)
    tmp = out / (METRICS + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")
    os.replace(tmp, out / METRICS)
    return records


CURVES = (
    ("accuracy", "training accuracy (reward)"),
    ("val_accuracy", "validation accuracy (pass@1)"),
    ("code_blocks", "code blocks per trajectory"),
    ("response_tokens", "response length (tokens)"),
)


def plot_runs(
    runs: list[tuple[str, list[dict[str, Any]]]], path: str | Path, title: str = ""
) -> None:
    """The behaviour curves (accuracy, validation accuracy, code blocks, response length per
    step), one line per run, as a PNG: whole steps on the shared x axis, plain numbers, accuracy
    panels on one 0..1 scale, the legend under the panels."""
    from or_common.figures import COLORS, legend_below, plain_axes, pyplot, save

    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    for ax, (key, name) in zip(axes.flat, CURVES, strict=True):
        for i, (label, records) in enumerate(runs):
            points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(
                    xs,
                    ys,
                    marker="o" if len(xs) < 30 else None,
                    label=label,
                    color=COLORS[i % len(COLORS)],
                )
        ax.set_title(name, loc="left")
        if "accuracy" in key:
            ax.set_ylim(0, 1)
        plain_axes(ax, integer_x=True)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    with_lines = next((ax for ax in axes.flat if ax.get_legend_handles_labels()[0]), axes.flat[0])
    legend_below(fig, with_lines, 11)
    fig.suptitle(
        title or "GRPO behaviour per step · " + ", ".join(label for label, _ in runs),
        x=0.01,
        ha="left",
    )
    fig.tight_layout()
    save(fig, path)
