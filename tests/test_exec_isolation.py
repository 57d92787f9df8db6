"""or-exec against the second round of attacks (issue 17): a crash on deep code, reading other
jobs from the sandbox parent's memory, a job's memory and CPU spread over many processes, and
what a job can learn of the host and its neighbours. Each test failed on the sandbox before
the fix (the earlier rounds are in test_exec_hostile.py and test_exec.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import textwrap
import time

import pytest
from conftest import read_jsonl, run_tool
from helpers import ROOT_USER, leftovers, needs_root
from or_exec.limits import Limits
from or_exec.outcome import derive_status
from or_exec.pool import SyncPool
from or_exec.sandbox.probes import heap_scan_code, marker

WORKERS = 2
LIMITS = Limits(timeout=5, memory_mb=1024, flood_bytes=8 << 20)
#: a 3000-term sum: `ast.parse` and `compile` both overflow their recursion limits on it
DEEP = "x = " + "+".join(["1"] * 3000) + "\nprint(x)\n"


@pytest.fixture(scope="module")
def pool():
    p = SyncPool(workers=WORKERS, limits=LIMITS, disk_mb=16, tiers={"pulp": ("pulp",)})
    yield p
    p.close()


def run(pool, code: str, **limits):
    return pool.run(textwrap.dedent(code), Limits(**{**LIMITS.to_dict(), **limits}))


def after(pool, code: str, delay: float, first: str, first_limits: dict | None = None, **limits):
    """Start `first`, then `code` `delay` seconds later, on the other slot: both results."""
    lim = Limits(**{**LIMITS.to_dict(), **limits})
    lim_first = Limits(**{**lim.to_dict(), **(first_limits or {})})

    async def go():
        a = asyncio.ensure_future(pool.pool.run(textwrap.dedent(first), lim_first))
        await asyncio.sleep(delay)
        b = await pool.pool.run(textwrap.dedent(code), lim)
        return await a, b

    return asyncio.run_coroutine_threadsafe(go(), pool._loop).result(timeout=120)


# -- 1. deep code ------------------------------------------------------------------------------


def test_deep_code_is_that_jobs_error_and_the_next_record_runs(pool):
    result = run(pool, DEEP)
    assert result.status == "error" and "RecursionError" in result.stderr
    assert run(pool, "print(6 * 7)").stdout == "42\n"


def test_deep_code_through_the_cli_never_stops_the_stream():
    records = [
        {"id": "deep", "flow": [{"role": "reasoner", "text": f"```python\n{DEEP}```\n"}]},
        {"id": "next", "flow": [{"role": "reasoner", "text": "```python\nprint(6 * 7)\n```\n"}]},
    ]
    done = run_tool("or-exec", input="".join(json.dumps(r) + "\n" for r in records))
    out = read_jsonl(done.stdout)
    assert done.returncode == 0
    assert [(r["id"], r["exec"]["status"]) for r in out] == [("deep", "error"), ("next", "ok")]
    assert out[1]["flow"][-1]["text"] == "```output\n42\n```\n"


def test_a_failure_while_preparing_a_job_is_that_jobs_error(pool, monkeypatch):
    import or_exec.pool as pool_module

    def broken(code, tiers):
        raise MemoryError("no room to choose")

    monkeypatch.setattr(pool_module, "choose_tier", broken)
    result = pool.run("print(1)")
    assert result.status == "error" and "could not prepare the job" in result.message


def test_the_server_answers_deep_code_with_the_jobs_error():
    from aiohttp.test_utils import TestClient, TestServer
    from or_exec.pool import Pool
    from or_exec.server import make_app

    async def go():
        pool = Pool(workers=1, limits=LIMITS, tiers={"pulp": ("pulp",)})
        protections = await pool.start()
        client = TestClient(TestServer(make_app(pool, protections)))
        await client.start_server()
        try:
            resp = await client.post("/run", data=json.dumps({"code": DEEP}))
            return resp.status, await resp.json()
        finally:
            await client.close()
            await pool.close()

    status, body = asyncio.run(go())
    assert status == 200 and body["status"] == "error"


# -- 3. other jobs in the parent's memory --------------------------------------------------------


def test_no_job_finds_another_jobs_code_or_output_in_its_memory(pool):
    code_mark, out_mark, partial_mark = marker(), marker(), marker()
    earlier = run(pool, f"secret = {code_mark!r}\nprint({out_mark!r})")
    assert earlier.stdout == out_mark + "\n"
    # a neighbour that has printed part of its output and is still running
    neighbour = f"import sys, time\nprint({partial_mark!r}, flush=True)\ntime.sleep(2.5)\n"
    sibling, scan = after(pool, heap_scan_code([code_mark, out_mark, partial_mark]), 1.0, neighbour)
    assert sibling.status == "ok" and sibling.stdout == partial_mark + "\n"
    assert scan.status == "ok", scan.stderr
    assert scan.stdout.endswith("found nothing\n"), scan.stdout
    assert int(scan.stdout.split()[1]) > 10  # MiB: the whole address space, the warm heap included


def test_two_clients_of_one_server_cannot_read_each_other():
    from aiohttp.test_utils import TestClient, TestServer
    from or_exec.pool import Pool
    from or_exec.server import make_app

    code_mark, out_mark = marker(), marker()

    async def go():
        pool = Pool(workers=2, limits=LIMITS, tiers={"pulp": ("pulp",)})
        server = TestServer(make_app(pool, await pool.start()))
        alice, mallory = TestClient(server), TestClient(server)
        await alice.start_server()
        try:
            body = {"code": f"secret = {code_mark!r}\nprint({out_mark!r})"}
            first = await (await alice.post("/run", data=json.dumps(body))).json()
            body = {"code": heap_scan_code([code_mark, out_mark])}
            scan = await (await mallory.post("/run", data=json.dumps(body))).json()
            return first, scan
        finally:
            await alice.close()
            await mallory.close()
            await pool.close()

    first, scan = asyncio.run(go())
    assert first["stdout"] == out_mark + "\n"
    assert scan["status"] == "ok" and scan["stdout"].endswith("found nothing\n"), scan


def test_the_heap_scan_finds_what_is_there(pool):
    """The scan itself works: it finds text every pulp job's memory holds."""
    scan = run(pool, "import pulp\n" + heap_scan_code(["LpProblem", "LpVariable"]))
    assert "found [0, 1]" in scan.stdout


# -- 4. memory per job ---------------------------------------------------------------------------


CHILDREN_TOUCH = """
import os, time
kids = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(100 << 20)
        for i in range(0, len(block), 4096):
            block[i] = 1
        time.sleep(1.5)
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print("600 MiB held")
"""

MEMFD = """
import os
fds = []
chunk = b"x" * (1 << 20)
for i in range(16):  # 64 MiB each: under the file size limit, 1 GiB together
    fd = os.memfd_create(f"hoard{i}")
    for _ in range(63):
        os.write(fd, chunk)
    fds.append(fd)
print("1 GiB in memfds")
"""


@needs_root
def test_children_of_one_job_share_its_memory_limit(pool):
    result = run(pool, CHILDREN_TOUCH, memory_mb=256)
    assert result.status == "memory", (result.status, result.stdout, result.stderr)
    assert leftovers(pool) == []
    assert run(pool, "print(6 * 7)", memory_mb=256).stdout == "42\n"


@needs_root
def test_memfd_pages_count_against_the_job(pool):
    result = run(pool, MEMFD, memory_mb=256)
    assert result.status == "memory", (result.status, result.stdout, result.stderr)
    assert "1 GiB" not in result.stdout


@needs_root
def test_a_job_under_its_memory_limit_is_ok(pool):
    code = "block = bytearray(150 << 20)\nblock[::4096] = b'x' * len(block[::4096])\nprint('ok')"
    assert (run(pool, code, memory_mb=256).status, run(pool, code).status) == ("ok", "ok")


def test_an_oom_kill_is_reported_as_memory():
    status, _, message = derive_status(
        wait_status=0,
        cpu_seconds=0.1,
        wall_seconds=0.2,
        limits={"timeout": 5, "memory_mb": 256, "flood_bytes": 1 << 20},
        reason=None,
        setup={"setup": 0.01},
        stderr="",
        oom_killed=True,
    )
    assert status == "memory" and "256 MiB" in message


# -- 5. CPU per job ------------------------------------------------------------------------------


STARVER = """
import os, time
for _ in range(60):
    if os.fork() == 0:
        os.setsid()
        while True:
            pass
time.sleep(10)
"""

HONEST = """
import time
t = time.process_time()
while time.process_time() - t < 0.25:
    pass
print("done")
"""


@needs_root
def test_a_job_with_many_busy_processes_does_not_starve_its_neighbour(pool):
    starver, honest = after(
        pool, HONEST, 1.0, STARVER, {"timeout": 5, "processes": 64}, timeout=2.5
    )
    assert (honest.status, honest.stdout) == ("ok", "done\n"), (honest.status, honest.seconds)
    assert starver.status == "timeout"
    assert leftovers(pool) == []


# -- 6. the host and the neighbours --------------------------------------------------------------


@needs_root
def test_a_job_sees_neither_the_host_name_nor_host_wide_proc_files(pool):
    code = """
    import socket
    print(socket.gethostname())
    for name in ("cmdline", "loadavg", "key-users", "meminfo", "stat", "uptime"):
        print(name, repr(open("/proc/" + name).read()))
    """
    lines = run(pool, code, memory_mb=300).stdout.splitlines()
    assert lines[0] == "sandbox" != socket.gethostname()
    seen = dict(line.split(" ", 1) for line in lines[1:])
    with open("/proc/cmdline") as fh:
        assert fh.read().strip() not in seen["cmdline"]
    assert seen["loadavg"] == repr("0.00 0.00 0.00 1/1 1\n")
    assert seen["key-users"] == repr("")
    assert f"MemTotal:       {300 << 10} kB" in seen["meminfo"]
    write = (
        "try:\n    open('/proc/meminfo', 'w').write('x')\nexcept OSError as e:\n    print(e.errno)"
    )
    assert run(pool, write).stdout.strip() in ("1", "13", "30")  # EPERM, EACCES, EROFS
    assert "procs_running 1" in seen["stat"]


@needs_root
def test_the_thread_count_is_no_channel_between_jobs(pool):
    """One job starts 40 threads; a job beside it reads the same /proc/loadavg throughout."""
    busy = "import threading, time\nfor _ in range(40):\n    threading.Thread(target=time.sleep, args=(2,)).start()\n"
    reader = "import time\nseen = set()\nfor _ in range(20):\n    seen.add(open('/proc/loadavg').read())\n    time.sleep(0.02)\nprint(len(seen), seen.pop().split()[3])"
    _, read = after(pool, reader, 0.5, busy)
    assert read.stdout == "1 1/1\n"


@needs_root
def test_the_cpu_count_still_works_with_neutral_proc_files(pool):
    code = (
        "import os, multiprocessing\nprint(os.cpu_count() >= 1, multiprocessing.cpu_count() >= 1)"
    )
    assert run(pool, code).stdout == "True True\n"


PAGE_CACHE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print("inotify_init1", libc.inotify_init1(0), ctypes.get_errno())
print("inotify_init", libc.inotify_init(), ctypes.get_errno())
fd = os.open(os.__file__, os.O_RDONLY)  # a read-only file every job shares
r = libc.readahead(fd, ctypes.c_long(0), ctypes.c_size_t(4096))
print("readahead", ctypes.get_errno() if r != 0 else "ALLOWED")
for name, call in (
    ("fadvise", lambda: os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)),
    ("nowait_read", lambda: os.preadv(fd, [bytearray(64)], 0, os.RWF_NOWAIT)),
    ("nowait_write", lambda: os.pwritev(fd, [b"x"], 0, os.RWF_NOWAIT)),
):
    try:
        call()
        print(name, "ALLOWED")
    except OSError as exc:
        print(name, exc.errno)
print("plain_read", len(os.pread(fd, 64, 0)))
"""


@needs_root
def test_inotify_fadvise_readahead_and_nowait_io_are_denied(pool):
    import errno

    lines = run(pool, PAGE_CACHE).stdout.splitlines()
    out = dict(line.split(" ", 1) for line in lines[2:])
    assert lines[0] == f"inotify_init1 -1 {errno.EPERM}"
    assert lines[1] == f"inotify_init -1 {errno.EPERM}"
    assert out["fadvise"] == str(errno.EPERM)
    assert out["readahead"] == str(errno.EPERM)
    assert out["nowait_read"] == str(errno.EOPNOTSUPP)
    assert out["nowait_write"] in (str(errno.EOPNOTSUPP), str(errno.EBADF))
    assert out["plain_read"] == "64"  # plain reads still work


def test_doctor_proves_the_new_protections():
    started = time.monotonic()
    text = run_tool("or-exec", "doctor").stdout.decode()
    assert time.monotonic() - started < 60
    lines = {line.split(":")[0].strip(): line for line in text.splitlines()}
    for name in ("memory per job", "CPU per job"):
        assert name in lines
    probes = text.split("Probes")[1]
    assert "jobs forked from a clean template: ok: scanned" in probes
    assert "found nothing" in probes
    if ROOT_USER:
        assert "memory per job: memory (contained)" in probes
        assert "host name sandbox" in probes
        assert "inotify Operation not permitted" in probes


def test_a_dead_template_costs_a_respawn_never_a_job(pool):
    import os
    import signal

    parent = pool.pool.parent_pids()["pulp"]
    with open(f"/proc/{parent}/task/{parent}/children") as fh:
        children = [int(pid) for pid in fh.read().split()]

    # the template is the child that imported pulp (the helper was forked before the imports)
    def size(pid: int) -> int:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[0])

    template = max(children, key=size)
    os.kill(template, signal.SIGKILL)
    time.sleep(0.2)
    result = run(pool, "print(6 * 7)")
    assert (result.status, result.stdout) == ("ok", "42\n")
    assert pool.pool.parent_pids()["pulp"] != parent  # the whole parent was replaced


@needs_root
def test_a_slot_starts_each_job_with_its_own_memory():
    """One slot, jobs one after another: the limit follows each job (lowered, raised, lowered
    again), and the files an earlier job left in its /tmp are not charged to the next one."""
    fill = textwrap.dedent("""
        chunk = b'x' * (1 << 20)
        for name in ('a', 'b', 'c'):  # 180 MiB in its tmpfs, each file under its size limit
            with open(name, 'wb') as fh:
                for _ in range(60):
                    fh.write(chunk)
        print('filled')
    """)
    take = "b = bytearray(200 << 20)\nb[::4096] = b'x' * len(b[::4096])\nprint('took')"
    with SyncPool(workers=1, limits=LIMITS, disk_mb=256, tiers={"pulp": ("pulp",)}) as one:
        small = Limits(**{**LIMITS.to_dict(), "memory_mb": 256})
        assert one.run(fill, small).stdout == "filled\n"
        assert one.run(take, small).stdout == "took\n"
        assert one.run(take).stdout == "took\n"
        assert one.run(take, small).stdout == "took\n"
        assert one.run(CHILDREN_TOUCH, small).status == "memory"
        assert one.run(take, small).status == "ok"  # an earlier OOM kill is not this job's
