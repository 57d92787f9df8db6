"""Benchmark or-exec against the naive harness and a bare fork floor, in one run.

Three harnesses run the same mix of realistic programs (bench/programs.py) at the same
concurrency:
  naive  a fresh `python script.py` subprocess per program (what public harnesses do)
  floor  a warm parent (pulp, numpy, scipy, sympy imported, gc.freeze) forking one child per
         program, with no isolation at all
  or-exec the sandbox pool (tiers + full isolation); also with a single full tier, which forks
         the same 120 MB parent as the floor

    uv run python bench/exec.py --rounds 3 --concurrency 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from programs import MIX, PROGRAMS  # noqa: E402

FLOOR = r"""
import gc, json, os, sys, time, selectors
import pulp, numpy, scipy, scipy.optimize, sympy
from concurrent.futures import ThreadPoolExecutor
jobs = json.loads(sys.stdin.read())
conc = int(sys.argv[1])
gc.freeze()

def run_one(code):
    t = time.perf_counter()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(w, 1); os.dup2(w, 2)
        try:
            exec(compile(code, "main.py", "exec"), {"__name__": "__main__"})
            code_ = 0
        except BaseException:
            code_ = 1
        sys.stdout.flush()
        os._exit(code_)
    os.close(w)
    out = b""
    while chunk := os.read(r, 65536):
        out += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return time.perf_counter() - t, out.decode()

t0 = time.perf_counter()
# Threads only wait on children here; forking happens with the GIL held, one at a time.
with ThreadPoolExecutor(conc) as ex:
    results = list(ex.map(run_one, jobs))
print(json.dumps({"wall": time.perf_counter() - t0, "latencies": [r[0] for r in results], "outputs": [r[1] for r in results]}))
"""


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def summary(name: str, wall: float, latencies: list[float], n: int) -> dict:
    return {
        "harness": name,
        "programs": n,
        "wall_s": round(wall, 3),
        "programs_per_s": round(n / wall, 2),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * pct(latencies, 0.99), 1),
    }


def naive(jobs: list[str], conc: int) -> tuple[dict, list[str]]:
    def one(code: str) -> tuple[float, str]:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "script.py"
            script.write_text(code)
            t = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp, timeout=120
            )
            return time.perf_counter() - t, proc.stdout

    t0 = time.perf_counter()
    with ThreadPoolExecutor(conc) as ex:
        results = list(ex.map(one, jobs))
    return summary(
        "naive subprocess", time.perf_counter() - t0, [r[0] for r in results], len(jobs)
    ), [r[1] for r in results]


def floor(jobs: list[str], conc: int) -> tuple[dict, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", FLOOR, str(conc)],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(proc.stdout)
    return summary(
        "bare fork floor (no isolation)", data["wall"], data["latencies"], len(jobs)
    ), data["outputs"]


def sandbox(
    jobs: list[str], conc: int, tiers: dict | None, name: str
) -> tuple[dict, list[str], dict]:
    from or_exec.limits import Limits
    from or_exec.pool import Pool

    async def go():
        pool = Pool(workers=conc, limits=Limits(timeout=60), tiers=tiers)
        await pool.start()
        for code in jobs[:4]:  # warm-up, as the floor's parent is warm too
            await pool.run(code)
        t0 = time.perf_counter()

        gate = asyncio.Semaphore(
            conc
        )  # same concurrency as the other harnesses: no queueing in latencies

        async def timed(code: str):
            async with gate:
                t = time.perf_counter()
                r = await pool.run(code)
                return time.perf_counter() - t, r

        results = await asyncio.gather(*(timed(c) for c in jobs))
        wall = time.perf_counter() - t0
        await pool.close()
        return wall, results

    wall, results = asyncio.run(go())
    bad = [r for _, r in results if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} sandboxed programs failed: {bad[0]}")
    phases = {
        k: round(1000 * statistics.mean(r.timings[k] for _, r in results), 2)
        for k in ("fork", "setup", "program", "teardown")
    }
    return (
        summary(name, wall, [t for t, _ in results], len(jobs)),
        [r.stdout for _, r in results],
        phases,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    jobs = [PROGRAMS[name] for name in MIX] * args.rounds
    conc = args.concurrency
    from or_exec.pool import DEFAULT_TIERS

    rows = []
    naive_row, naive_out = naive(jobs, conc)
    floor_row, floor_out = floor(jobs, conc)
    tiered_row, tiered_out, tiered_phases = sandbox(
        jobs, conc, None, "or-exec (tiers, full isolation)"
    )
    single_row, single_out, single_phases = sandbox(
        jobs, conc, {"full": DEFAULT_TIERS["full"]}, "or-exec (one full tier, full isolation)"
    )
    rows = [naive_row, floor_row, tiered_row, single_row]
    assert naive_out == floor_out == tiered_out == single_out, (
        "harnesses disagree on program output"
    )
    result = {
        "concurrency": conc,
        "programs": len(jobs),
        "mix": sorted(set(MIX)),
        "results": rows,
        "phases_ms": {"tiers": tiered_phases, "one_full_tier": single_phases},
        "speedup_vs_naive": round(tiered_row["programs_per_s"] / naive_row["programs_per_s"], 2),
        "isolated_vs_floor_time_ratio": round(tiered_row["wall_s"] / floor_row["wall_s"], 3),
        "single_tier_vs_floor_time_ratio": round(single_row["wall_s"] / floor_row["wall_s"], 3),
        "targets": {"speedup_vs_naive": ">= 5", "isolated_vs_floor_time_ratio": "<= 1.5"},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
