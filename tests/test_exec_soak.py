"""Soak of the sandbox server (bench/soak.py): 16 clients, mixed normal and hostile jobs, a
sandbox parent killed and the server restarted mid-run. No job lost, none duplicated, no fake
status. The short version serves in-process (restarting the HTTP side over the same pool); the
slow one restarts a real `or-exec serve` process."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter

import pytest
from conftest import ROOT
from helpers import free_port
from or_exec.limits import Limits
from or_exec.pool import Pool
from or_exec.server import RemotePool, SandboxUnavailable, make_app

sys.path.insert(0, str(ROOT / "bench"))
import soak  # noqa: E402


def check(results: list, n_clients: int) -> None:
    assert len(results) >= n_clients  # every client finished every job it sent
    tags = Counter(r[0] for r in results)
    assert [t for t, c in tags.items() if c > 1] == [], "a job came back twice"
    wrong = [r for r in results if r[4] != r[2] or (r[3] is not None and r[5] != r[3])]
    assert wrong == [], f"{len(wrong)} wrong results, e.g. {wrong[:3]}"
    assert {r[1] for r in results} >= {"square", "spin", "memory", "forge"}


async def _in_process_soak(seconds: float, clients: int) -> list:
    from aiohttp import web

    port = free_port()
    # one light tier: this soaks the server, the pool and the client, not the preloads
    pool = Pool(workers=4, limits=Limits(timeout=1, memory_mb=1024), tiers={"pulp": ("pulp",)})
    protections = await pool.start()

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(make_app(pool, protections))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    runner = await serve()
    results: list = []
    stop_at = time.monotonic() + seconds
    url = f"http://127.0.0.1:{port}"
    tasks = [asyncio.create_task(soak.client(url, n, stop_at, results)) for n in range(clients)]
    try:
        await asyncio.sleep(seconds * 0.3)
        os.kill(pool.parent_pids()["pulp"], signal.SIGKILL)
        await asyncio.sleep(seconds * 0.2)
        await runner.cleanup()  # the server goes away...
        await asyncio.sleep(0.7)
        runner = await serve()  # ...and comes back on the same port
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        await runner.cleanup()
        await pool.close()
    assert pool.stats["respawns"] >= 1
    return results


def test_soak_in_process():
    check(asyncio.run(_in_process_soak(3.0, 16)), 16)


@pytest.mark.slow
def test_soak_restarting_a_real_server():
    report = asyncio.run(soak.soak(clients=16, seconds=20, workers=4))
    assert report["n_wrong"] == 0 and report["duplicated"] == [], report
    assert report["chaos"] == [report["chaos"][0], "killed the server", "restarted the server"]


def test_an_unreachable_server_is_a_client_error_not_a_status():
    async def go():
        pool = RemotePool(f"http://127.0.0.1:{free_port()}", retry_seconds=0.5)
        t = time.monotonic()
        try:
            with pytest.raises(SandboxUnavailable, match="unreachable"):
                await pool.run("print(1)")
        finally:
            await pool.close()
        return time.monotonic() - t

    assert 0.5 <= asyncio.run(go()) < 3  # it retried with backoff for retry_seconds, then gave up


def test_a_refused_request_is_not_retried():
    from aiohttp import web

    async def go():
        port = free_port()
        pool = Pool(workers=1, tiers={"pulp": ("pulp",)})
        runner = web.AppRunner(make_app(pool, {}))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        client = RemotePool(f"http://127.0.0.1:{port}", retry_seconds=30)
        t = time.monotonic()
        try:
            with pytest.raises(SandboxUnavailable, match="refused the request \\(400\\)"):
                await client.run("print('\ud800')")  # a lone surrogate cannot be a program
        finally:
            await client.close()
            await runner.cleanup()
            await pool.close()
        return time.monotonic() - t

    assert asyncio.run(go()) < 5


def test_the_cli_writes_an_error_record_when_the_server_stays_away():
    from or_exec.records import execute_or_error

    record = {"id": "a", "flow": [{"role": "reasoner", "text": "```python\nprint(1)\n```\n"}]}

    async def go():
        pool = RemotePool(f"http://127.0.0.1:{free_port()}", retry_seconds=0.3)
        try:
            return await execute_or_error(record, pool, Limits(), False)
        finally:
            await pool.close()

    out = asyncio.run(go())
    assert out["exec"]["error"]["tool"] == "or-exec"
    assert out["exec"]["error"]["type"] == "SandboxUnavailable"
    assert "unreachable" in out["exec"]["error"]["message"]
    assert len(out["flow"]) == 1  # no executor segment: nothing ran, so nothing is claimed
