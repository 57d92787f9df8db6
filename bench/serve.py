"""or-exec serve under 8 concurrent clients: jobs/s for a trivial job and a PuLP job, this
checkout's server against a baseline revision's, both measured in the same run.

    uv run python bench/serve.py --baseline-rev 7f7453b --seconds 15

The baseline's or-exec (and or-common) source is checked out into a temporary git worktree and
served from it with this environment's interpreter; each server gets the same workers and the
same load (8 clients in threads, each posting one job after another to /run).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import free_port  # noqa: E402

JOBS = {
    "trivial": "print(6 * 7)",
    "pulp": (
        "import pulp\nm = pulp.LpProblem('b', pulp.LpMaximize)\n"
        "x = pulp.LpVariable('x', 0, 3, cat='Integer')\ny = pulp.LpVariable('y', 0)\n"
        "m += 3 * x + 2 * y\nm += x + y <= 4\nm += x + 3 * y <= 6\n"
        "m.solve(pulp.PULP_CBC_CMD(msg=False))\nprint(pulp.value(m.objective))"
    ),
}


def start(src: Path | None, workers: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ)
    if src is not None:  # the baseline's packages first on the path
        env["PYTHONPATH"] = f"{src}/tools/or-exec/src:{src}/common/src"
    cmd = [sys.executable, "-c", "from or_exec.cli import main; main()", "serve"]
    cmd += ["--port", str(port), "--workers", str(workers), "--timeout", "10"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, cwd="/")
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if requests.get(f"{url}/health", timeout=1).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    for code in JOBS.values():  # warm every tier the jobs use
        requests.post(f"{url}/run", json={"code": code}, timeout=60)
    return proc, url


def load(url: str, code: str, clients: int, seconds: float) -> dict[str, float]:
    done, bad = [0], [0]
    stop = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        while time.monotonic() < stop:
            r = session.post(f"{url}/run", json={"code": code}, timeout=60)
            if r.ok and r.json().get("status") == "ok":
                done[0] += 1
            else:
                bad[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    return {"jobs_per_s": round(done[0] / wall, 2), "failed": bad[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline-rev", default="7f7453b")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=8)
    args = ap.parse_args()
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "worktree",
                "add",
                "-q",
                "--detach",
                str(base),
                args.baseline_rev,
            ],
            check=True,
        )
        try:
            for name, src in (("baseline " + args.baseline_rev, base), ("this checkout", None)):
                proc, url = start(src, args.workers)
                try:
                    out[name] = {
                        job: load(url, code, args.clients, args.seconds)
                        for job, code in JOBS.items()
                    }
                finally:
                    proc.terminate()
                    proc.wait(30)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)])
    names = list(out)
    ratios = {
        job: round(
            out[names[1]][job]["jobs_per_s"] / max(out[names[0]][job]["jobs_per_s"], 1e-9), 3
        )
        for job in JOBS
    }
    print(
        json.dumps(
            {"clients": args.clients, "workers": args.workers, **out, "ratio": ratios}, indent=2
        )
    )


if __name__ == "__main__":
    main()
