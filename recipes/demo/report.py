"""Write the demo's report.md from what each stage left in the demo folder, and check that every
stage produced what it should (exit 1 naming the stage otherwise): CI runs the demo, so a stage
that silently produced nothing fails it.

    python recipes/demo/report.py runs/demo --model "scripted stand-in (not a model)"
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # recipes/, for render_funnel
from render_funnel import funnel  # noqa: E402


def read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def fenced(text: str, lang: str = "") -> str:
    return f"````{lang}\n{text.rstrip()}\n````\n"


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, stage: str, ok: bool, what: str) -> None:
        if not ok:
            self.failed.append(f"{stage}: {what}")


def audit_section(out: Path, check: Checks) -> str:
    problems = read(out / "02-audit" / "problems.jsonl")
    by_id = {p["id"]: p for p in problems}
    dups = read(out / "02-audit" / "duplicates.jsonl")
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in dups:
        reason = rec.get("filter", {}).get("reason", "")
        if not reason.startswith("near_duplicate_of:"):
            continue
        other = reason.split(":")[1]
        key = tuple(sorted((rec["id"], other)))
        pairs[key] = {"a": by_id.get(key[0], {}), "b": by_id.get(key[1], {})}
    conflicts = [
        p
        for p in pairs.values()
        if p["a"].get("answer") is not None
        and p["b"].get("answer") is not None
        and not math.isclose(p["a"]["answer"], p["b"]["answer"], rel_tol=1e-3)
    ]
    counts = collections.Counter(p["benchmark"] for p in problems)
    check("2. data audit", bool(problems), "no sample problems")
    check("2. data audit", bool(pairs), "or-filter found no cross-benchmark duplicate")
    lines = [
        "## 2. Data audit of the bundled sample\n",
        f"{len(problems)} real problems ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}), "
        f"see `data/sample/README.md`. `or-filter --decontaminate` against the other benchmarks "
        f"found **{len(pairs)} cross-benchmark near-duplicate pairs**; **{len(conflicts)}** of them "
        "carry different reference answers:\n",
        "| problem | its answer | duplicate | its answer |",
        "| --- | ---: | --- | ---: |",
    ]
    for p in sorted(conflicts, key=lambda p: p["a"]["id"]):
        lines.append(
            f"| {p['a']['id']} | {p['a']['answer']} | {p['b']['id']} | {p['b']['answer']} |"
        )
    lines.append(
        "\nThe rejected records, with the match: [`02-audit/duplicates.jsonl`](02-audit/duplicates.jsonl)\n"
    )
    return "\n".join(lines)


def first(records: list[dict[str, Any]], pred: Any) -> dict[str, Any] | None:
    return next((r for r in records if pred(r)), None)


def generation_section(out: Path, model: str, check: Checks) -> str:
    problems = read(out / "problems.jsonl")
    gen = read(out / "03-gen.jsonl")
    statuses = collections.Counter(
        s.get("status") for r in gen for s in r.get("flow", []) if s.get("role") == "executor"
    )
    check(
        "3. generation",
        len(gen) > 0 and len(gen) % max(len(problems), 1) == 0,
        f"{len(gen)} trajectories for {len(problems)} problems",
    )
    check(
        "3. generation", statuses.get("ok", 0) > 0, "no code block ran successfully in the sandbox"
    )
    example = first(gen, lambda r: any(s.get("status") == "ok" for s in r.get("flow", [])))
    lines = [
        "## 3. Generation with code execution\n",
        f"Reasoner: **{model}**. {len(gen)} trajectories on {len(problems)} problems; executions by "
        f"status: {', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))}. "
        "[`03-gen.jsonl`](03-gen.jsonl)\n",
    ]
    if example is not None:
        lines.append(
            f"One trajectory ({example['id']}, sample {example['sample']}), segment by segment:\n"
        )
        for seg in example["flow"]:
            status = f", {seg['status']}" if seg.get("status") else ""
            lines.append(f"*{seg['role']}{status}*\n")
            lines.append(fenced(seg["text"]))
    return "\n".join(lines)


def calm_section(out: Path, check: Checks) -> str:
    calm = read(out / "04-calm.jsonl")
    golden = read(out / "05-golden.jsonl")
    rounds = [(r, rd) for r in calm for rd in (r.get("calm", {}).get("rounds") or [])]
    check("4. CALM", len(calm) > 0, "or-intervene wrote nothing")
    check("4. CALM", len(rounds) > 0, "the Intervener made no intervention")
    check("4. CALM", len(golden) > 0, "no golden trajectory")
    lines = [
        "## 4. CALM: Intervener hints and golden selection\n",
        f"{len(rounds)} interventions over {len(calm)} trajectories; {len(golden)} golden "
        "trajectories (correct and flawless, one per problem). "
        "[`04-calm.jsonl`](04-calm.jsonl), [`05-golden.jsonl`](05-golden.jsonl)\n",
    ]
    # the funnels the tools wrote with --stats, rendered as they said them on stderr
    for tool, name in (("or-intervene", "04-funnel.json"), ("or-filter", "05-funnel.json")):
        stats = out / name
        check("4. CALM", stats.exists(), f"{tool} wrote no {name}")
        if stats.exists():
            lines += [f"{tool}'s funnel:\n", fenced("\n".join(funnel(stats)))]
    if rounds:
        record, rd = rounds[0]
        lines += [
            f"One intervention ({record['id']}, sample {record['sample']}, trigger {rd.get('trigger')}): "
            "the flow is cut where this text begins",
            fenced(str(rd.get("target", ""))),
            "and this hint is inserted in the Reasoner's voice before it resumes:",
            fenced(str(rd.get("hint", ""))),
        ]
    return "\n".join(lines)


def sft_section(out: Path, check: Checks) -> str:
    metrics = read(out / "06-sft" / "metrics.jsonl")
    losses = [m["loss"] for m in metrics if isinstance(m.get("loss"), int | float)]
    tiny = read(out / "08-scored-tiny.jsonl")
    correct = sum(1 for r in tiny if r.get("score", {}).get("correct"))
    check(
        "5. SFT",
        len(losses) > 0 and all(math.isfinite(x) for x in losses),
        "no finite training loss in 06-sft/metrics.jsonl",
    )
    check("5. SFT", (out / "06-sft" / "config.json").exists(), "no checkpoint in 06-sft")
    check("5. SFT", len(tiny) > 0, "or-gen wrote nothing from the SFT checkpoint")
    plots = sorted(p.name for p in (out / "06-sft").glob("*.png"))
    lines = [
        "## 5. SFT of a tiny random Qwen3, and generation from it\n",
        f"or-sft trained a randomly initialised 2-layer Qwen3 (real tokenizer) for {len(losses)} "
        f"logged steps on the golden records: loss {losses[0]:.3f} → {losses[-1]:.3f}. "
        if losses
        else "",
        f"or-gen then generated from the checkpoint with the transformers backend: {correct} of "
        f"{len(tiny)} answers correct. A model this small and this briefly trained scores about "
        "zero: this stage shows the machinery (checkpoint, chat template, generation loop), not a result. "
        "[`06-sft/`](06-sft/), [`07-tiny-gen.jsonl`](07-tiny-gen.jsonl)\n",
    ]
    lines += [f"![{name}](06-sft/{name})\n" for name in plots]
    return "\n".join(lines)


def view_section(out: Path, check: Checks) -> str:
    lint = (
        (out / "10-lint.txt").read_text(encoding="utf-8") if (out / "10-lint.txt").exists() else ""
    )
    check("7. or-view", (out / "view.html").exists(), "no view.html")
    flagged = sorted({line.split(": ")[1] for line in lint.splitlines() if ": " in line})
    lines = [
        "## 7. Looking at the trajectories\n",
        "[`view.html`](view.html): every trajectory before and after CALM side by side, in one "
        "static page (sortable and filterable table; each flow segment by segment with the "
        "Intervener's cuts, the text they removed and the hints they inserted). In a terminal: "
        f"`or-view {out}/08-scored-calm.jsonl --id ID --sample S`.\n",
    ]
    if flagged:
        lines += [
            f"`or-view --check` finds malformed trajectories in {len(flagged)} records of the "
            "CALM run (the pipeline let them through; see the page's `lint` column):\n",
            fenced(lint),
        ]
    else:
        lines.append("`or-view --check` finds nothing malformed in the CALM run.\n")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="scripted stand-in (not a model)")
    args = parser.parse_args()
    out: Path = args.out
    check = Checks()
    doctor = (
        (out / "01-doctor.txt").read_text(encoding="utf-8")
        if (out / "01-doctor.txt").exists()
        else ""
    )
    check("1. sandbox", bool(doctor.strip()), "or-exec doctor printed nothing")
    parts = [
        "# calm-storm demo\n",
        f"Every stage below ran for real on this machine. The Reasoner is **{args.model}**"
        + (
            ": hand-written text and PuLP code for five of the problems (recipes/demo/playbook.py), "
            "served on 127.0.0.1. It is not a model, and no number in this report measures one."
            if "scripted" in args.model
            else "."
        )
        + "\n",
        "## 1. The sandbox\n",
        fenced(doctor),
        audit_section(out, check),
        generation_section(out, args.model, check),
        calm_section(out, check),
        sft_section(out, check),
        "## 6. Scores and flaws\n",
        (out / "08-scores.md").read_text(encoding="utf-8")
        if (out / "08-scores.md").exists()
        else "",
        "\n![pass@1](08-scores.png)\n",
        "Flaw triggers found by or-annotate's rules in the first generation:\n",
        (out / "09-flaws.md").read_text(encoding="utf-8") if (out / "09-flaws.md").exists() else "",
        "\n![flaws](09-flaws.png)\n",
        view_section(out, check),
    ]
    check("6. reports", (out / "08-scores.png").exists(), "no score chart")
    (out / "report.md").write_text("\n".join(parts), encoding="utf-8")
    if check.failed:
        for line in check.failed:
            print(f"demo check failed: {line}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
