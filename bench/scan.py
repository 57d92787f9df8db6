"""Benchmark the scans over a flow on hostile records against benign records of the same size.

Hostile records (issue 17, item 8): 8000 unclosed ```` ```python ```` openings (80 KB), thousands
of unclosed `\\boxed{`, a program printing 80 KB of blank lines, a long line of `1+1+…` in the
thinking. Benign: realistic rounds (thinking, a PuLP block, its output) of the same size. Each
figure is the best of `--repeat` runs, in milliseconds; the block scan is also timed with the
lazy regex it replaced (the baseline, same run; one run, it takes seconds on the hostile text).

    uv run python bench/scan.py
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from typing import Any

from or_common.answers import extract_boxed_all
from or_common.blocks import flow_blocks, python_blocks
from or_common.flaws import detect
from or_common.records import flow_text
from or_common.scoring import score_record
from or_grpo.reward import compute_score

#: blocks.py's pattern before the single-pass scan (each opening rescanned the rest of the text).
OLD_BLOCK = re.compile(r"```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
ROUND = (
    "Let x be the trips by boat and y by canoe; minimise 20x + 40y subject to 10x + 8y >= 300.\n"
    "```python\nimport pulp\nm = pulp.LpProblem('p', pulp.LpMinimize)\n"
    "x = pulp.LpVariable('x', 0, cat='Integer')\nm += 20 * x\nm.solve()\n"
    "print('Objective:', pulp.value(m.objective))\n```\n"
)
OUTPUT = "```output\nStatus: Optimal\nObjective: 1160.0\n```\n"


def fill(piece: str, size: int) -> str:
    return (piece * (size // len(piece) + 1))[:size]


def record(
    thinking: str = "", output: str = OUTPUT, after: str = "It fits.", answer: str = "\\boxed{100}"
) -> dict[str, Any]:
    """A trajectory with a wrong answer, so that every flaw detector runs to its end."""
    flow = [
        {"role": "reasoner", "text": thinking + ROUND},
        {"role": "executor", "text": output, "status": "ok"},
        {"role": "reasoner", "text": f"{after}\n</think>\n\n{answer}"},
    ]
    gen = {"finish": "stop", "prompt_opens_think": True}
    return {"id": "b", "question": "How many trips?", "answer": 1160, "flow": flow, "gen": gen}


def best_ms(fn: Callable[[], Any], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return round(best * 1e3, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-kb", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--baseline-kb", type=int, default=80)
    args = parser.parse_args()
    size = args.size_kb * 1000
    text = {
        "benign": fill(ROUND + OUTPUT, size),
        "unclosed_python": fill("```python\n", size),
    }
    #: each hostile record and the benign record of the same size it is compared with
    twins = {
        "unclosed_python": "benign",
        "printed_blank_lines": "benign",
        "long_arithmetic_line": "benign",
        "unclosed_boxes": "closed_boxes",
    }
    records = {
        "benign": record(fill(ROUND + OUTPUT, size)),
        "closed_boxes": record(answer=fill("\\boxed{1} ", size)),
        "unclosed_python": record(fill("```python\n", size)),
        "unclosed_boxes": record(answer=fill("\\boxed{1 ", size)),
        "printed_blank_lines": record(output="```output\n" + "\n" * size + "```\n"),
        "long_arithmetic_line": record(after=fill("1+", size)),
    }
    functions: dict[str, Callable[[dict[str, Any]], Any]] = {
        "flow_blocks": lambda r: flow_blocks(r["flow"]),
        "extract_boxed_all": lambda r: extract_boxed_all(flow_text(r["flow"])),
        "flaws.detect": detect,
        "score_record": lambda r: score_record(dict(r)),
        "grpo_reward_fallback": lambda r: compute_score("b", flow_text(r["flow"]), "1160"),
    }
    ms: dict[str, dict[str, float]] = {
        "python_blocks": {
            k: best_ms(lambda v=v: python_blocks(v), args.repeat) for k, v in text.items()
        }
    }
    for fname, fn in functions.items():
        ms[fname] = {k: best_ms(lambda r=r, f=fn: f(r), args.repeat) for k, r in records.items()}
    worst = {
        f: round(max(row[h] / max(row[b], 1e-3) for h, b in twins.items() if h in row), 2)
        for f, row in ms.items()
    }
    cut = args.baseline_kb * 1000
    result = {
        "size_kb": args.size_kb,
        "best_of": args.repeat,
        "ms": ms,
        "worst_hostile_vs_its_benign_twin": worst,
        "baseline_lazy_regex_ms": {
            f"benign_{args.size_kb}kb": best_ms(
                lambda: list(OLD_BLOCK.finditer(text["benign"])), args.repeat
            ),
            f"unclosed_python_{args.baseline_kb}kb": best_ms(
                lambda: list(OLD_BLOCK.finditer(text["unclosed_python"][:cut])), 1
            ),
        },
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
