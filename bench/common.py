"""Helpers shared by the benchmark scripts: realistic trajectories and process measurements."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from pathlib import Path

THINK = (
    "Let me define the decision variables. Let x be the number of boat trips and y the number of canoe trips. "
    "The objective is to minimize total time 20x + 40y subject to 10x + 8y >= 300, x <= 12, y >= 0.6(x + y). "
)
CODE = (
    "```python\nimport pulp\nm = pulp.LpProblem('p', pulp.LpMinimize)\nx = pulp.LpVariable('x', 0, cat='Integer')\n"
    "y = pulp.LpVariable('y', 0, cat='Integer')\nm += 20*x + 40*y\nm += 10*x + 8*y >= 300\nm += x <= 12\n"
    "m += y >= 0.6*(x + y)\nm.solve(pulp.PULP_CBC_CMD(msg=False))\nprint('Status:', pulp.LpStatus[m.status])\n"
    "print('Objective:', pulp.value(m.objective))\n```\n"
)


def trajectory(i: int, rng: random.Random, think_chars: int = 16_000) -> dict:
    """A trajectory shaped like the Reasoner's: long thinking, 1-3 code blocks, a boxed answer."""
    answer = rng.choice([1160, 630, 395.5, 16, 3.1])
    flow = []
    for _ in range(rng.randint(1, 3)):
        flow.append(
            {"role": "reasoner", "text": THINK * max(1, think_chars // (len(THINK) * 2)) + CODE}
        )
        flow.append(
            {
                "role": "executor",
                "text": f"```output\nStatus: Optimal\nObjective: {answer}\n```\n",
                "status": "ok",
                "seconds": 0.03,
            }
        )
    boxed = answer if rng.random() < 0.7 else answer * 1.1
    flow.append(
        {
            "role": "reasoner",
            "text": f"The solver agrees with the model.</think>\n\nThe minimum is \\boxed{{{boxed:,}}}.",
        }
    )
    return {
        "id": f"bench-{i // 8}",
        "sample": i % 8,
        "benchmark": rng.choice(["nl4opt", "mamo-easy", "industryor"]),
        "question": "A problem statement " * 40,
        "answer": answer,
        "messages": [{"role": "user", "content": "prompt " * 200}],
        "flow": flow,
        "gen": {
            "model": "bench",
            "backend": "openai",
            "finish": "stop",
            "executions": len(flow) // 2,
            "completion_tokens": 5000,
        },
    }


def write_trajectories(path: Path, target_bytes: int, seed: int = 0) -> int:
    """Write realistic trajectories until the file reaches `target_bytes`; returns the count."""
    rng = random.Random(seed)
    samples = [json.dumps(trajectory(i, rng)) + "\n" for i in range(64)]
    n = 0
    size = 0
    with open(path, "w") as fh:
        while size < target_bytes:
            rec = json.loads(samples[n % len(samples)])
            rec["id"], rec["sample"] = f"bench-{n // 8}", n % 8
            line = json.dumps(rec) + "\n"
            fh.write(line)
            size += len(line)
            n += 1
    return n


def peak_rss_mib(cmd: list[str], stdin_path: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one command, measured with wait4's rusage."""
    t0 = time.perf_counter()
    with open(stdin_path, "rb") as fin, open(os.devnull, "wb") as fout:
        proc = subprocess.Popen(cmd, stdin=fin, stdout=fout, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise RuntimeError(f"{cmd} exited {code}")
    return seconds, usage.ru_maxrss / 1024
