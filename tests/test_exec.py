"""or-exec: the sandbox against hostile code, correctness on real programs, and the CLI.

Every hostile case must end in bounded time with the right status, leave no process of the
job's uid behind, and the pool must serve a normal job afterwards.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time

import pytest
from conftest import ROOT, read_jsonl, run_tool
from helpers import ROOT_USER, leftovers, needs_root
from or_common.turn import output_block
from or_exec.limits import Limits
from or_exec.pool import DEFAULT_TIERS, SyncPool, choose_tier

WORKERS = 2
SECRET = "calm-storm-test-secret-7f3a"

PULP_PROGRAM = textwrap.dedent("""
    import pulp
    m = pulp.LpProblem("bakery", pulp.LpMaximize)
    x = pulp.LpVariable("bread", 0, cat="Integer")
    y = pulp.LpVariable("cake", 0, cat="Integer")
    m += 3 * x + 5 * y
    m += 2 * x + 4 * y <= 100
    m += x + 3 * y <= 60
    m += x <= 40
    m.solve(pulp.PULP_CBC_CMD(msg={msg}))
    print("Status:", pulp.LpStatus[m.status])
    print("Objective:", pulp.value(m.objective))
""")


@pytest.fixture(scope="module")
def pool():
    os.environ["OR_EXEC_TEST_SECRET"] = SECRET  # the caller holds a secret the jobs must not see
    p = SyncPool(workers=WORKERS, limits=Limits(timeout=3, memory_mb=1024, flood_bytes=8 << 20))
    yield p
    p.close()
    os.environ.pop("OR_EXEC_TEST_SECRET", None)


def run_hostile(pool, code: str, **limits):
    t = time.monotonic()
    result = pool.run(
        textwrap.dedent(code),
        Limits(**{"timeout": 3, "memory_mb": 1024, "flood_bytes": 8 << 20, **limits}),
    )
    elapsed = time.monotonic() - t
    assert elapsed < 15, f"took {elapsed:.1f} s"
    if ROOT_USER:
        assert leftovers(pool, WORKERS) == [], "a process of the job outlived it"
    follow = pool.run("print(6 * 7)")
    assert (follow.status, follow.stdout) == ("ok", "42\n"), (
        "the pool did not serve a normal job afterwards"
    )
    return result


def test_normal_job_and_tiers(pool):
    result = pool.run(PULP_PROGRAM.format(msg=False))
    assert result.status == "ok" and result.exit_code == 0
    assert "Objective: 145.0" in result.stdout
    assert result.tier == "pulp"
    assert set(result.timings) == {"fork", "setup", "program", "teardown"}
    assert pool.run("import numpy; print(numpy.arange(3).sum())").tier == "numpy"
    assert pool.run("from scipy.optimize import linprog\nprint(1)").tier == "full"


def test_tier_choice():
    assert choose_tier("import pulp", DEFAULT_TIERS) == "pulp"
    assert choose_tier("import math, itertools\nimport pulp as p", DEFAULT_TIERS) == "pulp"
    assert choose_tier("import numpy as np", DEFAULT_TIERS) == "numpy"
    assert choose_tier("import sympy", DEFAULT_TIERS) == "full"
    assert choose_tier("def (:", DEFAULT_TIERS) == "python"


def test_infinite_loop_times_out(pool):
    result = run_hostile(pool, "while True: pass", timeout=1)
    assert result.status == "timeout"
    assert 0.9 < result.seconds < 3


def test_sigterm_ignored_still_times_out(pool):
    result = run_hostile(
        pool,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True: time.sleep(0.01)
    """,
        timeout=1,
    )
    assert result.status == "timeout"


def test_cpu_limit(pool):
    result = run_hostile(pool, "while True: pass", timeout=5, cpu_seconds=1)
    assert result.status == "timeout" and result.seconds < 4


def test_fork_bomb_is_contained(pool):
    result = run_hostile(
        pool,
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """,
        timeout=2,
    )
    assert result.status in ("timeout", "error", "killed")


def test_memory_bomb(pool):
    assert run_hostile(pool, "x = bytearray(8 << 30)").status == "memory"
    result = run_hostile(
        pool,
        """
        chunks = []
        while True:
            chunks.append(bytearray(50 << 20))
    """,
        timeout=10,  # zero-filling 1 GiB takes seconds on a loaded 2-core machine
    )
    assert result.status == "memory"
    assert "MemoryError" in output_block(result)


def test_output_flood_is_killed_and_truncated(pool):
    result = run_hostile(pool, "while True: print('x' * 1000)")
    assert result.status == "killed" and "output exceeded" in result.message
    assert result.truncated and "bytes of output cut" in result.stdout
    assert len(result.stdout) < 9000


def test_large_finite_output_keeps_head_and_tail(pool):
    result = run_hostile(pool, "for i in range(20000): print(f'line {i}')")
    assert result.status == "ok" and result.truncated
    assert result.stdout.startswith("line 0\nline 1\n")
    assert result.stdout.endswith("line 19999\n")
    assert "bytes of output cut" in result.stdout


def test_disk_flood(pool):
    big = run_hostile(
        pool, "f = open('big', 'wb')\nwhile True: f.write(b'x' * (1 << 20))", file_mb=16
    )
    # Python ignores SIGXFSZ, so the write past the file-size limit fails with EFBIG
    assert big.status == "error" and "File too large" in big.stderr
    many = run_hostile(
        pool,
        """
        i = 0
        while True:
            with open(f'f{i}', 'wb') as f:
                f.write(b'x' * (8 << 20))
            i += 1
    """,
        file_mb=16,
        timeout=10,
    )
    assert many.status in ("error", "killed")  # ENOSPC on the sandbox's size-limited tmpfs
    if ROOT_USER:
        assert "No space left" in many.stderr


@needs_root
def test_secrets_are_invisible(pool):
    result = run_hostile(
        pool,
        """
        import os, glob
        found = [k for k, v in os.environ.items() if 'secret' in v.lower() or 'SECRET' in k]
        for path in glob.glob('/proc/*/environ'):
            try:
                if b'calm-storm-test-secret' in open(path, 'rb').read():
                    found.append(path)
            except OSError:
                pass
        print('found', found)
    """,
    )
    assert result.status == "ok"
    assert result.stdout == "found []\n"
    assert SECRET not in result.stdout + result.stderr


@needs_root
def test_no_network_even_to_loopback(pool):
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        result = run_hostile(
            pool,
            f"""
            import socket
            socket.create_connection(('127.0.0.1', {port}), timeout=1)
            print('connected')
        """,
        )
    assert result.status == "error" and "connected" not in result.stdout
    assert "unreachable" in result.stderr or "refused" in result.stderr


@needs_root
def test_cannot_write_outside_its_directory(pool):
    target = ROOT / "tests" / "sandbox-escape.txt"
    result = run_hostile(
        pool,
        f"""
        import os
        print(os.getcwd())
        open('inside.txt', 'w').write('fine')
        for path in ({str(target)!r}, '/etc/sandbox-escape', '/usr/sandbox-escape', '/root/x'):
            try:
                open(path, 'w').write('escaped')
                print('WROTE', path)
            except OSError as e:
                print('blocked', path, type(e).__name__)
    """,
    )
    assert result.status == "ok"
    assert "WROTE" not in result.stdout
    assert not target.exists() and not os.path.exists("/etc/sandbox-escape")
    # /tmp is the job's own: writable, but seen by no one else
    private = run_hostile(pool, "open('/tmp/sandbox-escape', 'w').write('x')\nprint('ok')")
    assert (private.status, private.stdout) == ("ok", "ok\n")
    assert not os.path.exists("/tmp/sandbox-escape")
    later = pool.run("import os\nprint(os.path.exists('/tmp/sandbox-escape'))")
    assert later.stdout == "False\n"


@needs_root
def test_job_directory_is_fresh_and_removed(pool):
    first = pool.run(
        "import os\nopen('left-behind', 'w').write('x')\nprint(os.getcwd(), sorted(os.listdir('.')))"
    )
    second = pool.run("import os\nprint(os.getcwd(), sorted(os.listdir('.')))")
    assert "left-behind" in first.stdout
    assert second.stdout.split()[1:] == ["['main.py']"]
    assert first.stdout.split()[0] != second.stdout.split()[0]


@needs_root
def test_killing_the_parent_fails_and_the_pool_survives(pool):
    pids = pool.pool.parent_pids()
    code = f"""
        import os, signal
        print(os.getppid())  # 0: the parent is outside the job's pid namespace
        for pid in ({pids["pulp"]}, {os.getpid()}, 1):
            try:
                os.kill(pid, signal.SIGKILL)
                print('KILLED', pid)
            except OSError as e:
                print(type(e).__name__)
    """
    result = run_hostile(pool, code)
    assert result.status == "ok", result.stderr
    assert result.stdout == "0\nProcessLookupError\nProcessLookupError\nPermissionError\n"
    assert pool.pool.parent_pids() == pids


def test_pools_side_by_side_have_their_own_uids(pool):
    """Two tools in a pipeline each run a pool: a job of one must survive the other's sweeps."""
    import asyncio

    async def both():
        other = SyncPool(workers=1, tiers={"pulp": ("pulp",)})
        try:
            assert other.pool.uid_base != pool.pool.uid_base
            slow = asyncio.ensure_future(
                asyncio.wrap_future(
                    asyncio.run_coroutine_threadsafe(
                        pool.pool.run("import time\ntime.sleep(1.5)\nprint('survived')"), pool._loop
                    )
                )
            )
            for _ in range(5):  # jobs ending in the other pool sweep their own uid only
                assert other.run("print(1)").status == "ok"
            return await slow
        finally:
            other.close()

    result = asyncio.run(both())
    assert (result.status, result.stdout) == ("ok", "survived\n")


@needs_root
def test_kill_minus_one_only_kills_the_job(pool):
    pids = pool.pool.parent_pids()
    code = """
        import os, signal, time
        child = os.fork()
        if child == 0:
            time.sleep(30)
            os._exit(0)
        os.kill(-1, signal.SIGKILL)
        print('survived', os.waitpid(child, 0)[1])
    """
    result = run_hostile(pool, code)
    # kill(-1) reaches the job's own child only, and spares the caller
    assert (result.status, result.stdout) == ("ok", "survived 9\n")
    assert pool.pool.parent_pids() == pids


def test_child_left_running_is_killed_at_job_end(pool):
    result = run_hostile(pool, "import subprocess\nsubprocess.Popen(['sleep', '60'])\nprint('bye')")
    assert result.status == "ok" and result.seconds < 2


@needs_root
def test_setsid_daemon_is_killed(pool):
    result = run_hostile(
        pool,
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:
                    time.sleep(0.05)
            os._exit(0)
        print('parent done')
    """,
    )
    assert result.status == "ok"


def test_recursion_bomb(pool):
    result = run_hostile(pool, "def f(): return f()\nf()")
    assert result.status == "error" and "RecursionError" in result.stderr
    deep = run_hostile(
        pool, "import sys\nsys.setrecursionlimit(10**7)\ndef f(n): return f(n + 1) + 1\nf(0)"
    )
    assert deep.status in (
        "killed",
        "error",
        "memory",
        "timeout",
    )  # bounded, whichever limit hits first


def test_segfault(pool):
    result = run_hostile(pool, "import ctypes\nctypes.string_at(0)")
    assert result.status == "killed" and "SIGSEGV" in result.message


def test_reading_stdin_gets_eof(pool):
    result = run_hostile(pool, "print(input())")
    assert result.status == "error" and "EOFError" in result.stderr


def test_exit_codes(pool):
    result = pool.run("import sys\nprint('x')\nsys.exit(3)")
    assert (result.status, result.exit_code, result.stdout) == ("error", 3, "x\n")
    assert pool.run("import sys\nsys.exit(0)").status == "ok"
    assert pool.run("raise SystemExit('bad input')").stderr == "bad input\n"


def test_cbc_writing_to_fd_1_is_captured(pool):
    result = pool.run(PULP_PROGRAM.format(msg=True))
    assert result.status == "ok"
    assert "Objective: 145.0" in result.stdout
    assert "Cbc" in result.stdout or "CBC" in result.stdout or "Coin" in result.stdout


def test_state_does_not_leak_between_jobs(pool):
    poison = pool.run(
        "import pulp, builtins\npulp.LpProblem = None\npulp.PULP_CBC_CMD = None\nbuiltins.print = None\nGLOBAL_X = 5"
    )
    assert poison.status == "ok"
    result = pool.run(PULP_PROGRAM.format(msg=False) + "\nprint('GLOBAL_X' in globals())")
    assert "Objective: 145.0" in result.stdout and result.stdout.endswith("False\n")


def test_random_state_differs_between_jobs(pool):
    a = pool.run("import numpy, random\nprint(numpy.random.rand(), random.random())").stdout
    b = pool.run("import numpy, random\nprint(numpy.random.rand(), random.random())").stdout
    assert a != b


def test_syntax_error(pool):
    result = pool.run("def broken(:\n    pass")
    assert result.status == "error" and "SyntaxError" in result.stderr


def test_stateful_prelude(pool):
    result = pool.run("print(total + 1)", prelude=["total = 41\nprint('hidden')"])
    assert (result.status, result.stdout) == ("ok", "42\n")


def test_concurrent_jobs(pool):
    import asyncio

    async def many():
        return await asyncio.gather(*(pool.pool.run(f"print({i} * 2)") for i in range(12)))

    results = asyncio.run_coroutine_threadsafe(many(), pool._loop).result()
    assert [r.stdout for r in results] == [f"{i * 2}\n" for i in range(12)]


def test_parent_death_is_noticed_and_the_job_runs_again(pool):
    """A parent's death is not the job's doing: the job runs again and gets its true result."""
    import asyncio

    async def scenario():
        retries = pool.pool.stats["retries"]
        code = "import pulp, time\ntime.sleep(1)\nprint('done')"  # on the pulp tier
        job = asyncio.create_task(pool.pool.run(code))
        await asyncio.sleep(0.5)
        os.kill(pool.pool.parent_pids()["pulp"], signal.SIGKILL)
        return await job, pool.pool.stats["retries"] - retries

    result, retries = asyncio.run_coroutine_threadsafe(scenario(), pool._loop).result(timeout=30)
    assert (result.status, result.stdout, retries) == ("ok", "done\n", 1)
    after = pool.run("print('back')")
    assert (after.status, after.stdout) == ("ok", "back\n")
    if ROOT_USER:
        assert leftovers(pool, WORKERS) == []


# -- CLI ---------------------------------------------------------------------------------------


def _trajectory(i: int, text: str) -> dict:
    return {"id": f"t{i}", "sample": 0, "flow": [{"role": "reasoner", "text": text}], "keep": i}


def test_cli_appends_executor_segment_in_order():
    paused = "I will solve it.\n```python\nprint(sum(range({n})))\n```\n"
    records = [_trajectory(i, paused.format(n=i + 1)) for i in range(6)]
    records.append(_trajectory(6, "No code here.</think>\\boxed{1}"))
    result = run_tool(
        "or-exec", "--workers", "2", input="".join(json.dumps(r) + "\n" for r in records)
    )
    assert result.returncode == 0, result.stderr
    out = read_jsonl(result.stdout)
    assert [r["id"] for r in out] == [f"t{i}" for i in range(7)]
    for i, rec in enumerate(out[:6]):
        seg = rec["flow"][-1]
        assert seg == {
            "role": "executor",
            "text": f"```output\n{sum(range(i + 1))}\n```\n",
            "status": "ok",
            "seconds": seg["seconds"],
        }
        assert (
            rec["exec"]["status"] == "ok" and rec["exec"]["appended"] is True and rec["keep"] == i
        )
    assert out[6] == records[6]


def test_cli_runs_but_never_appends_to_a_turn_cut_by_its_budget():
    rec = _trajectory(0, "Let me check.\n```python\nprint(6 * 7)\n```\n")
    rec["gen"] = {"finish": "length"}  # the fence was the budget's last token
    out = read_jsonl(run_tool("or-exec", input=json.dumps(rec) + "\n").stdout)[0]
    assert out["flow"] == rec["flow"]
    assert out["exec"]["appended"] is False and out["exec"]["text"] == "```output\n42\n```\n"
    assert "finish: length" in out["exec"]["not_appended"]


def test_cli_rerun_of_answered_block_keeps_flow():
    rec = {
        "id": "a",
        "sample": 1,
        "flow": [
            {"role": "reasoner", "text": "```python\nprint(2 + 2)\n```\n"},
            {"role": "executor", "text": "```output\n4\n```\n", "status": "ok", "seconds": 0.01},
            {"role": "reasoner", "text": "</think>\\boxed{4}"},
        ],
    }
    out = read_jsonl(run_tool("or-exec", input=json.dumps(rec) + "\n").stdout)[0]
    assert out["flow"] == rec["flow"]
    assert out["exec"]["matches_flow"] is True and out["exec"]["text"] == "```output\n4\n```\n"


def test_cli_stateful_replays_earlier_successful_blocks():
    flow = [
        {"role": "reasoner", "text": "```python\nx = 20\nprint(x)\n```\n"},
        {"role": "executor", "text": "```output\n20\n```\n", "status": "ok", "seconds": 0.01},
        {"role": "reasoner", "text": "```python\nprint(x * 2)\n```\n"},
    ]
    data = json.dumps({"id": "s", "flow": flow}) + "\n"
    stateless = read_jsonl(run_tool("or-exec", input=data).stdout)[0]
    stateful = read_jsonl(run_tool("or-exec", "--stateful", input=data).stdout)[0]
    assert (
        stateless["flow"][-1]["status"] == "error" and "NameError" in stateless["flow"][-1]["text"]
    )
    assert stateful["flow"][-1]["text"] == "```output\n40\n```\n"


def test_cli_timeout_option():
    rec = _trajectory(0, "```python\nwhile True: pass\n```\n")
    out = read_jsonl(run_tool("or-exec", "--timeout", "1", input=json.dumps(rec) + "\n").stdout)[0]
    assert out["flow"][-1]["status"] == "timeout"
    assert "TimeoutError" in out["flow"][-1]["text"]


def test_serve_and_remote_client(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/or-exec") if (ROOT / ".venv/bin/or-exec").exists() else "or-exec",
            "serve",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        import urllib.request

        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.load(
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                )
                break
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health["ok"] is True
        rec = _trajectory(0, "```python\nprint('remote')\n```\n")
        result = run_tool(
            "or-exec", "--sandbox", f"http://127.0.0.1:{port}", input=json.dumps(rec) + "\n"
        )
        out = read_jsonl(result.stdout)[0]
        assert out["flow"][-1]["text"] == "```output\nremote\n```\n"
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=2))
        assert stats["jobs"] == 1 and stats["by_status"] == {"ok": 1}
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


def test_doctor_tells_the_truth():
    result = run_tool("or-exec", "doctor")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "default solver (prob.solve()): ok: Optimal x = 3.0" in text
    if ROOT_USER:
        assert "✓ network namespace" in text and "blocked" in text
        for name in ("minimal root", "pid namespace", "IPC namespace", "seccomp"):
            assert f"✓ {name}: on" in text, name
        assert "host files hidden: ok: hidden: " in text
        assert "no user namespaces: ok: blocked: errno 1" in text
        assert re.search(r"unprivileged uid: ok: uid \d{7,}", text)
    else:
        assert "✗" in text


def test_strict_stops_at_a_bad_record_and_writes_nothing_after_it():
    """In input order, --strict stops at the first bad record: the records before it are
    written, none after it (even when their work finished first)."""
    plain = {"id": "ok", "flow": [{"role": "reasoner", "text": "no code here"}]}
    lines = [plain, {"id": "bad"}, *({**plain, "id": f"after{i}"} for i in range(20))]
    proc = run_tool("or-exec", "--strict", input="".join(json.dumps(r) + "\n" for r in lines))
    assert proc.returncode != 0
    assert [r["id"] for r in read_jsonl(proc.stdout)] == ["ok"]
    assert b"<stdin>:2" in proc.stderr
