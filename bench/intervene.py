"""Benchmark the rules Intervener: trajectories judged per second against a baseline measured in
the same run (decoding the same records with orjson, the floor of any streaming tool), and the
hybrid Intervener's share of model calls (trajectories on which the rules see nothing) on a mix
of realistic trajectories.

The mix: long trajectories shaped like the Reasoner's (bench/common.py), of which a share carry
one flaw the rules can see (units in the box, a NameError across blocks, hand re-verification,
an Infeasible status with a wrong answer), a share are wrong with no evidence (the generic
re-check fires), and the rest are clean.

    uv run python bench/intervene.py --records 4000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from common import trajectory  # noqa: E402


def flawed(rec: dict, kind: str) -> dict:
    flow = rec["flow"]
    if kind == "units":
        flow[-1]["text"] = (
            flow[-1]["text"].replace("\\boxed{", "\\boxed{\\$").replace("}.", " dollars}.")
        )
    elif kind == "fragmented":
        flow.insert(
            -1, {"role": "reasoner", "text": "Now the constraints.\n```python\nm += x <= 12\n```\n"}
        )
        flow.insert(
            -1,
            {
                "role": "executor",
                "text": "```output\nTraceback (most recent call last):\nNameError: name 'm' is not defined\n```\n",
                "status": "error",
            },
        )
    elif kind == "verify":
        flow[-1]["text"] = (
            "Let me check by hand.\n20*12 = 240\n40*30 = 1200\n240 + 1200 = 1440\n"
            + flow[-1]["text"]
        )
    elif kind == "infeasible":
        flow[-2]["text"] = "```output\nStatus: Infeasible\nObjective: 0.0\n```\n"
        flow[-1]["text"] = "Odd.</think>\n\nThe minimum is \\boxed{0}."
    elif kind == "wrong":
        flow[-1]["text"] = "Done.</think>\n\nThe minimum is \\boxed{7}."
    return rec


MIX = {
    "clean": 0.55,
    "units": 0.1,
    "fragmented": 0.1,
    "verify": 0.1,
    "infeasible": 0.05,
    "wrong": 0.1,
}


def make_records(n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    kinds = rng.choices(list(MIX), weights=list(MIX.values()), k=n)
    out = []
    for i, kind in enumerate(kinds):
        rec = trajectory(i, rng, think_chars=6000)
        rec["flow"] = rec["flow"][:2] + rec["flow"][-1:]  # one complete script and its output
        rec["flow"][-1]["text"] = (
            f"The solver agrees.</think>\n\nThe minimum is \\boxed{{{rec['answer']}}}."
        )
        out.append(orjson.dumps(flawed(rec, kind)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=4000)
    args = parser.parse_args()
    from or_intervene.interveners import RulesIntervener

    lines = make_records(args.records)
    t = time.perf_counter()
    for line in lines:
        orjson.loads(line)
    baseline = time.perf_counter() - t

    rules = RulesIntervener()

    async def review_all() -> Counter:
        verdicts: Counter = Counter()
        for line in lines:
            record = orjson.loads(line)
            intervention, _ = await rules.review(record, record["flow"])
            verdicts[intervention.trigger or "none"] += 1
        return verdicts

    t = time.perf_counter()
    verdicts = asyncio.run(review_all())
    seconds = time.perf_counter() - t
    mb = sum(len(x) for x in lines) / 1e6
    result = {
        "records": args.records,
        "mean_record_kb": round(1000 * mb / args.records, 1),
        "baseline_orjson_decode_per_s": round(args.records / baseline),
        "rules_judged_per_s": round(args.records / seconds),
        "rules_vs_baseline_time_ratio": round(seconds / baseline, 1),
        "findings_by_trigger": {
            str(k): v for k, v in sorted(verdicts.items(), key=lambda kv: str(kv[0]))
        },
        "hybrid_model_call_share": round(verdicts["none"] / args.records, 3),
        "mix": MIX,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
