"""Benchmark or-sft's data path: trajectories encoded per second on one core (hygiene checks +
the token layer: chat template, each flow segment tokenized, labels), on realistic ~6k-token
trajectories with the real Qwen3-4B-Thinking-2507 tokenizer.

Measured in the same run, as ceilings: the Rust tokenizer alone on the same texts (one
`encode_batch` per record, no Python around it), and one big `encode_batch` over all segments
of all records (what batching across records could at best reach). CPU seconds of this process
are reported next to wall seconds, because a shared machine's wall clock also counts other
people's work. One core: TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1.

    uv run python bench/sft.py --records 1000
"""

from __future__ import annotations

import os

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QWEN = ROOT / "tests" / "fixtures" / "qwen3-tokenizer"
DATA = ROOT.parent / "shared" / "data"


def corpus() -> tuple[list[str], list[str]]:
    """Real problem texts (benchmarks) and real model-and-code answers (OR-Instruct)."""
    questions, answers = [], []
    for name in ("nl4opt.jsonl", "mamo_complex.jsonl", "industryor.jsonl"):
        path = DATA / name
        if path.exists():
            questions += [json.loads(line)["question"] for line in path.open()]
    pilot = DATA / "train_or_instruct_sample100.jsonl"
    if pilot.exists():
        answers = [json.loads(line)["meta"]["completion"] for line in pilot.open()]
    if not questions or not answers:
        raise SystemExit(f"bench/sft.py needs the shared data in {DATA}")
    return questions, answers


def trajectory(rng: random.Random, i: int, questions, answers, target_chars: int) -> dict:
    """A trajectory shaped like or-gen's: thinking, two or three executions (outputs masked),
    a hint, the final answer; text taken from real model answers, ~6k tokens."""
    from or_common.reasoner import REASONER_PROMPT, build_messages

    flow = []
    size = 0
    runs = rng.choice((2, 3))
    for k in range(runs):
        text = ""
        while len(text) < target_chars // (runs + 1):
            text += rng.choice(answers) + "\n\n"
        code = f"```python\nimport pulp\nm = pulp.LpProblem('p{k}', pulp.LpMinimize)\n"
        code += "".join(f"x{j} = pulp.LpVariable('x{j}', lowBound=0)\n" for j in range(8))
        code += "m += x0 + 2 * x1\nm.solve()\nprint('Objective:', pulp.value(m.objective))\n```\n"
        flow.append({"role": "reasoner", "text": text + code})
        flow.append(
            {
                "role": "executor",
                "text": f"```output\nStatus: Optimal\nObjective: {rng.randint(10, 9999)}.0\n```\n",
                "status": "ok",
            }
        )
        size += len(text)
        if k == 0:
            flow.append({"role": "reasoner", "text": "The solver reports an optimum, which I"})
            flow.append({"role": "intervener", "text": " should check against the data first."})
    flow.append({"role": "reasoner", "text": "It fits.\n</think>\n\nThe optimum is \\boxed{42}."})
    messages = build_messages(rng.choice(questions), REASONER_PROMPT, 4)
    return {
        "id": f"b{i}",
        "sample": 0,
        "messages": messages,
        "flow": flow,
        "gen": {"finish": "stop"},
    }


def timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--chars", type=int, default=20000, help="text per trajectory (~6k tokens)")
    parser.add_argument("--write", metavar="FILE", help="only write the trajectories (JSONL) here")
    args = parser.parse_args()

    from or_common.tokens import encode_record, load_tokenizer, render_prompt
    from or_sft.data import check_record, to_example

    tok = load_tokenizer(str(QWEN))
    questions, answers = corpus()
    rng = random.Random(0)
    records = [trajectory(rng, i, questions, answers, args.chars) for i in range(args.records)]
    if args.write:
        Path(args.write).write_text("".join(json.dumps(r) + "\n" for r in records))
        return
    lengths: list[int] = []

    def or_sft_path() -> None:
        for rec in records:
            check_record(rec)
            lengths.append(len(to_example(rec, encode_record(tok, rec))["input_ids"]))

    def rust_per_record() -> None:
        for rec in records:
            texts = [render_prompt(tok, rec["messages"])] + [s["text"] for s in rec["flow"]]
            tok._tokenizer.encode_batch(texts, add_special_tokens=False)

    def rust_one_batch() -> None:
        texts = [s["text"] for rec in records for s in rec["flow"]]
        tok._tokenizer.encode_batch(texts, add_special_tokens=False)

    encode_record(tok, records[0])  # warm the template and the tokenizer's caches
    results = {}
    for name, fn in (
        ("or-sft encode (check + token layer + labels)", or_sft_path),
        ("ceiling: Rust tokenizer, one batch per record", rust_per_record),
        ("ceiling: Rust tokenizer, one batch for all flow text", rust_one_batch),
    ):
        wall, cpu = timed(fn)
        results[name] = {
            "records_per_wall_s": round(args.records / wall, 1),
            "records_per_cpu_s": round(args.records / cpu, 1),
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu, 2),
        }
    tokens = sum(lengths)
    ours = results["or-sft encode (check + token layer + labels)"]
    summary = {
        "records": args.records,
        "mean_tokens": round(tokens / args.records),
        "max_tokens": max(lengths),
        "tokens_per_cpu_s": round(tokens / ours["cpu_s"]),
        "target_records_per_s": 500,
        "results": results,
        "overhead_vs_rust_per_record": round(
            ours["cpu_s"] / results["ceiling: Rust tokenizer, one batch per record"]["cpu_s"], 2
        ),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
