"""Soak `or-exec serve`: many clients send a mix of normal and hostile jobs while a sandbox
parent is killed and the whole server is restarted. Every job must come back exactly once
with the status its code deserves: none lost, none duplicated, no fake `killed` from a
restart (the client retries through it).

    uv run python bench/soak.py --clients 16 --seconds 120

tests/test_exec_soak.py runs a few seconds of the same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

#: (name, code, expected status, expected stdout or None) -- run with a 1 s timeout
JOBS = [
    ("square", "print({i} * {i})", "ok", "{sq}\n"),
    ("exit3", "import sys\nprint('x')\nsys.exit(3)", "error", "x\n"),
    ("spin", "while True: pass", "timeout", ""),
    ("sleep", "import time\ntime.sleep(5)", "timeout", ""),
    ("memory", "x = bytearray(8 << 30)", "memory", ""),
    (
        "forge",
        "import os\nn = 0\nfor fd in range(3, 256):\n    try:\n        os.write(fd, b'[]')\n"
        "        n += 1\n    except OSError:\n        pass\nprint('wrote', n)",
        "ok",
        "wrote 0\n",
    ),
    (
        "daemon",
        "import os, signal, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(0.3)\n"
        "    while True:\n        try:\n            os.kill(-1, signal.SIGSTOP)\n"
        "        except OSError:\n            pass\n        time.sleep(0.01)\nprint('left')",
        "ok",
        "left\n",
    ),
    (
        "forkbomb",
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "timeout",
        None,
    ),
]
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import free_port  # noqa: E402


class Server:
    """An `or-exec serve` subprocess we can kill and restart on the same port."""

    def __init__(self, port: int, workers: int):
        self.port, self.workers = port, workers
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        exe = Path(sys.executable).parent / "or-exec"
        self.proc = subprocess.Popen(
            [str(exe), "serve", "--port", str(self.port), "--workers", str(self.workers),
             "--timeout", "1", "--memory", "1024"],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("or-exec serve did not start") from None
                time.sleep(0.1)

    def parents(self) -> list[int]:
        """The sandbox parents of the server: its direct children."""
        assert self.proc is not None
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(path) as fh:
            return [int(p) for p in fh.read().split()]

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


async def client(url: str, n: int, stop_at: float, results: list) -> None:
    from or_exec.limits import Limits
    from or_exec.server import RemotePool

    pool = RemotePool(url, Limits(timeout=10), retry_seconds=60)
    try:
        k = 0
        while time.monotonic() < stop_at:
            name, code, status, stdout = JOBS[(n + k) % len(JOBS)]
            tag = f"{n}-{k}"
            i = n * 1000 + k
            code = code.format(i=i)
            stdout = stdout.format(sq=i * i) if stdout is not None else None
            try:
                result = await pool.run(code, Limits(timeout=10))
                results.append((tag, name, status, stdout, result.status, result.stdout))
            except Exception as exc:  # counted: a client error is not a job status
                results.append((tag, name, status, stdout, f"client error: {exc}", None))
            k += 1
    finally:
        await pool.close()


async def soak(clients: int, seconds: float, workers: int) -> dict:
    port = free_port()
    server = Server(port, workers)
    server.start()
    url = f"http://127.0.0.1:{port}"
    results: list = []
    stop_at = time.monotonic() + seconds
    tasks = [asyncio.create_task(client(url, n, stop_at, results)) for n in range(clients)]
    chaos = []
    try:
        await asyncio.sleep(seconds * 0.3)
        victim = server.parents()[0]
        os.kill(victim, signal.SIGKILL)
        chaos.append(f"killed sandbox parent {victim}")
        await asyncio.sleep(seconds * 0.2)
        server.kill()
        chaos.append("killed the server")
        await asyncio.sleep(1.0)
        await asyncio.to_thread(server.start)
        chaos.append("restarted the server")
        await asyncio.gather(*tasks)
    finally:
        server.stop()
    tags = Counter(r[0] for r in results)
    wrong = [r for r in results if r[4] != r[2] or (r[3] is not None and r[5] != r[3])]
    return {
        "clients": clients,
        "seconds": seconds,
        "jobs": len(results),
        "by_status": dict(Counter(r[4] for r in results)),
        "duplicated": [t for t, c in tags.items() if c > 1],
        "wrong": wrong[:20],
        "n_wrong": len(wrong),
        "chaos": chaos,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    report = asyncio.run(soak(args.clients, args.seconds, args.workers))
    print(json.dumps(report, indent=2))
    sys.exit(1 if report["n_wrong"] or report["duplicated"] else 0)


if __name__ == "__main__":
    main()
