"""`or-exec serve` as a service other stacks use (issue 21): SandboxFusion's dialect through
verl's own client, the OpenAPI document against the live server and or-exec's docs page, the
clients, the token, and the held-out denial-of-service attacks (slowloris, abandoned requests, a
full queue, a huge program); and `or-exec run FILE.py` (issue 19)."""

from __future__ import annotations

import base64
import json
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import ROOT, run_tool, tool_path
from helpers import free_port
from or_exec import Limits, Pool, RemotePool, SandboxUnavailable, SyncRemotePool
from or_exec.fusion import FIELDS as FUSION_FIELDS
from or_exec.openapi import document
from or_exec.server import RUN_FIELDS


class Server:
    """A real `or-exec serve` process on 127.0.0.1, started and waited for."""

    def __init__(self, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [tool_path("or-exec"), "serve", "--port", str(self.port), "--timeout", "5", *args]
        self.proc = subprocess.Popen(
            cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
        )
        self.lines: list[str] = []
        for line in self.proc.stderr:
            self.lines.append(line)
            if "ready in" in line:
                break
        else:
            raise RuntimeError("or-exec serve did not start: " + "".join(self.lines))
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def server():
    s = Server("--workers", "2", "--max-queue", "2")
    yield s
    s.stop()


# -- SandboxFusion, through verl's own client ---------------------------------------------------


def test_verls_sandbox_fusion_client_gets_correct_results(server):
    from verl.utils.reward_score.sandbox_fusion.utils import call_sandbox_api

    url = f"{server.url}/run_code"
    ok, err = call_sandbox_api(url, "print(int(input()) * 2)", "21", 10, 5, 512)
    assert err is None and ok["status"] == "Success"
    assert ok["run_result"]["status"] == "Finished" and ok["run_result"]["return_code"] == 0
    assert ok["run_result"]["stdout"] == "42\n"
    assert ok["or_exec"]["limits"]["memory_mb"] == 512  # what it ran under, echoed
    failed, _ = call_sandbox_api(url, "raise SystemExit(3)", None, 10, 5, 512)
    assert failed["status"] == "Failed" and failed["run_result"]["return_code"] == 3
    slow, _ = call_sandbox_api(url, "import time\ntime.sleep(30)", None, 10, 1, 512)
    assert slow["status"] == "Failed" and slow["run_result"]["status"] == "TimeLimitExceeded"
    huge, _ = call_sandbox_api(url, "print(1)", None, 10, 999, 10**6)  # above the ceilings
    assert (
        huge["or_exec"]["limits"]["timeout"] == 5 and huge["or_exec"]["limits"]["memory_mb"] == 4096
    )


def test_verls_reward_helper_scores_a_program_against_expected_output(server):
    from verl.utils.reward_score.sandbox_fusion.utils import check_correctness

    tests = {"inputs": ["3\n", "5\n"], "outputs": ["9\n", "25\n"]}
    code = "n = int(input())\nprint(n * n)"
    results, metadata = check_correctness(f"{server.url}/run_code", tests, code, timeout=5)
    assert results == [True, True], metadata


def test_files_in_and_out_in_both_dialects(server):
    code = "data = open('in/data.csv').read()\nopen('out.txt', 'w').write(data.upper())"
    files = {"in/data.csv": base64.b64encode(b"a,b\n").decode()}
    fusion = requests.post(
        f"{server.url}/run_code",
        json={"code": code, "language": "python", "files": files, "fetch_files": ["out.txt"]},
        timeout=30,
    ).json()
    assert base64.b64decode(fusion["files"]["out.txt"]) == b"A,B\n"
    ours = requests.post(
        f"{server.url}/run", json={"code": code, "files": files, "fetch": ["out.txt", "nope"]}
    ).json()
    assert base64.b64decode(ours["files"]["out.txt"]) == b"A,B\n" and ours["files"]["nope"] is None
    bad = requests.post(f"{server.url}/run", json={"code": code, "files": {"../x": "YQ=="}})
    assert bad.status_code == 400 and "relative paths" in bad.json()["error"]


def test_an_unknown_field_is_refused_with_the_valid_fields(server):
    resp = requests.post(f"{server.url}/run", json={"code": "1", "timeout": 3})
    assert resp.status_code == 400
    assert resp.json()["error"] == (
        f"bad request: unknown fields ['timeout']; the fields are {list(RUN_FIELDS)}"
    )
    resp = requests.post(f"{server.url}/run_code", json={"code": "1", "lang": "python"})
    assert resp.status_code == 400 and str(list(FUSION_FIELDS)) in resp.json()["error"]
    resp = requests.post(f"{server.url}/run_code", json={"code": "1", "language": "cpp"})
    assert resp.status_code == 400 and "only python" in resp.json()["error"]


# -- the documented API ----------------------------------------------------------------------


def test_the_openapi_document_describes_the_live_server(server):
    doc = requests.get(f"{server.url}/openapi.json").json()
    assert doc == json.loads(json.dumps(document()))
    for path, ops in doc["paths"].items():
        for method in ops:
            resp = requests.request(method, f"{server.url}{path}", data=b"{}")
            assert resp.status_code in (200, 400), (path, method, resp.status_code)
    run = doc["paths"]["/run"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(run["properties"]) == set(RUN_FIELDS)
    fusion = doc["paths"]["/run_code"]["post"]["requestBody"]["content"]["application/json"]
    assert set(fusion["schema"]["properties"]) == set(FUSION_FIELDS)
    health = requests.get(f"{server.url}/health").json()
    schema = doc["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    assert set(health) == set(schema["schema"]["properties"])
    assert health["ceilings"]["timeout"] == 5 and health["workers"] == 2
    result = requests.post(f"{server.url}/run", json={"code": "print(1)"}).json()
    assert set(result) <= set(doc["components"]["schemas"]["Result"]["properties"])


def test_the_docs_api_section_matches_the_document():
    """Every path, request field and limit of the document is in the API section of or-exec's
    page (regenerate the section from `or_exec.openapi.document()` if this fails)."""
    text = (ROOT / "docs" / "or-exec.md").read_text()
    section = text.split("\n## The API\n")[1].split("\n## ")[0]
    doc = document()
    for path in doc["paths"]:
        assert f"`{path}`" in section, path
    for name in (
        *RUN_FIELDS,
        *FUSION_FIELDS,
        *doc["components"]["schemas"]["Limits"]["properties"],
    ):
        assert f"`{name}`" in section, name


# -- clients and the token ------------------------------------------------------------------------


def test_the_package_exports_both_clients_and_the_sync_one_works(server):
    with SyncRemotePool(server.url) as pool:
        result = pool.run("print(6 * 7)", Limits(timeout=60, memory_mb=256))
        assert (result.status, result.stdout) == ("ok", "42\n")
        assert result.limits["timeout"] == 5 and result.limits["memory_mb"] == 256
        assert pool.health()["ceilings"]["memory_mb"] == 4096
    assert Pool.__module__ == "or_exec.pool" and RemotePool.__module__ == "or_exec.client"


def test_a_token_is_required_when_given():
    s = Server("--workers", "1", env={"OR_EXEC_TOKEN": "s3cret"})
    try:
        assert requests.post(f"{s.url}/run", json={"code": "1"}).status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert requests.post(f"{s.url}/run", json={"code": "1"}, headers=wrong).status_code == 401
        assert requests.get(f"{s.url}/health").status_code == 200  # open: for load balancers
        right = {"Authorization": "Bearer s3cret"}
        assert requests.post(f"{s.url}/run", json={"code": "1"}, headers=right).status_code == 200
        with SyncRemotePool(s.url, token="s3cret") as pool:
            assert pool.run("print(1)").stdout == "1\n"
        with (
            SyncRemotePool(s.url, token="nope", retry_seconds=1) as pool,
            pytest.raises(SandboxUnavailable, match="401"),
        ):
            pool.run("print(1)")
    finally:
        s.stop()


def test_a_public_address_without_a_token_is_refused():
    done = run_tool(
        "or-exec", "serve", "--host", "0.0.0.0", "--port", "1", env={"OR_EXEC_TOKEN": ""}
    )
    assert done.returncode == 2
    assert "give a --token (or OR_EXEC_TOKEN), or --insecure" in done.stderr.decode()


def test_startup_is_announced_as_soon_as_the_port_is_bound(server):
    assert server.lines[0].startswith(f"or-exec: listening on {server.url} (2 workers; no token)")
    assert any(line.startswith("or-exec: ready in ") for line in server.lines)


def test_a_waiting_client_says_so_and_gives_up_after_its_wait(capsys):
    async def go():
        pool = RemotePool(f"http://127.0.0.1:{free_port()}", retry_seconds=1.0)
        try:
            await pool.run("print(1)")
        finally:
            await pool.close()

    import asyncio

    with pytest.raises(SandboxUnavailable, match="unreachable for 1 s"):
        asyncio.run(go())
    assert "or-exec: waiting for the sandbox server" in capsys.readouterr().err
    done = run_tool(
        "or-exec", "--sandbox", f"http://127.0.0.1:{free_port()}", "--sandbox-wait", "1",
        input='{"id": "a", "flow": [{"role": "reasoner", "text": "```python\\nprint(1)\\n```\\n"}]}\n',
    )  # fmt: skip
    err = done.stderr.decode()
    assert done.returncode == 1 and "waiting for the sandbox server" in err
    assert "unreachable for 1 s" in err


# -- denial of service -------------------------------------------------------------------------


def test_slowloris_cannot_lock_an_honest_client_out():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    s = Server("--workers", "1")
    socks = []
    try:
        for _ in range(1020):
            c = socket.create_connection(("127.0.0.1", s.port))
            c.sendall(b"POST /run HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            socks.append(c)
        socks[-1].settimeout(5)
        refused = socks[-1].recv(4096).decode()  # over the cap: an immediate, clear 503
        assert refused.startswith("HTTP/1.1 503") and "too many connections" in refused
        with SyncRemotePool(s.url, retry_seconds=60) as pool:
            result = pool.run("print('through')")
        assert (result.status, result.stdout) == ("ok", "through\n")
    finally:
        for c in socks:
            c.close()
        s.stop()


def test_abandoned_requests_are_cancelled_and_their_jobs_killed():
    s = Server("--workers", "2")
    try:
        for _ in range(4):  # each would hold a worker for 30 s
            with pytest.raises(requests.exceptions.ReadTimeout):
                requests.post(
                    f"{s.url}/run", json={"code": "import time\ntime.sleep(30)"}, timeout=0.5
                )
        # not behind 4 x 30 s of abandoned jobs: it would time out here if they still ran
        honest = requests.post(f"{s.url}/run", json={"code": "print(7)"}, timeout=25).json()
        assert honest["stdout"] == "7\n"
        for _ in range(50):  # the killed jobs are counted once their parent reported them
            stats = requests.get(f"{s.url}/stats").json()
            if stats["by_status"].get("killed", 0) == 4:
                break
            time.sleep(0.1)
        assert stats["by_status"] == {"killed": 4, "ok": 1}
    finally:
        s.stop()


def test_a_full_queue_answers_503_and_the_client_honours_retry_after(server):
    code = {"code": "import time\ntime.sleep(2)"}
    results: list[int] = []

    def post():
        results.append(requests.post(f"{server.url}/run", json=code, timeout=60).status_code)

    threads = [threading.Thread(target=post) for _ in range(6)]  # 2 workers + 2 waiting
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 200, 200, 200, 503, 503]
    with SyncRemotePool(server.url) as pool:  # retries on 503 after Retry-After, then runs
        busy = [threading.Thread(target=post) for _ in range(4)]
        for t in busy:
            t.start()
        time.sleep(0.3)
        assert pool.run("print('later')").stdout == "later\n"
        for t in busy:
            t.join()


def test_a_huge_program_does_not_freeze_the_server(server):
    big = "x = 1\n" + "# " + "y" * (15 << 20) + "\nprint('big')\n"
    order: list[str] = []

    def post_big():
        resp = requests.post(f"{server.url}/run", json={"code": big}, timeout=120)
        order.append(f"big {resp.status_code}")

    t = threading.Thread(target=post_big)
    t.start()
    time.sleep(0.5)  # the big request is being read and handled
    for _ in range(3):
        assert requests.get(f"{server.url}/health", timeout=30).status_code == 200
        order.append("health")
    t.join()
    assert order[-1] == "big 200" and order.count("health") == 3


# -- or-exec run FILE.py ------------------------------------------------------------------------


def test_a_plain_program_runs_with_its_data_files(tmp_path):
    prog = tmp_path / "prog.py"
    prog.write_text("import sys\nprint(open('data.csv').read().strip())\nsys.exit(3)\n")
    data = tmp_path / "d.csv"
    data.write_text("1,2\n")
    done = run_tool("or-exec", str(prog), "--file", f"data.csv={data}")
    assert done.stdout == b"1,2\n" and done.returncode == 3
    assert re.fullmatch(
        rf"or-exec: {re.escape(str(prog))}: error in \d+\.\d\d s\n", done.stderr.decode()
    )


def test_several_programs_give_a_record_each_and_a_summary(tmp_path):
    names = []
    for name, code in (
        ("a.py", "print(1)"),
        ("b.py", "1/0"),
        ("c.py", "import time\ntime.sleep(9)"),
    ):
        (tmp_path / name).write_text(code)
        names.append(str(tmp_path / name))
    done = run_tool("or-exec", "run", *names, "--timeout", "1")
    out = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [(r["file"], r["status"]) for r in out] == list(
        zip(names, ["ok", "error", "timeout"], strict=True)
    )
    assert done.stderr.decode().endswith("or-exec: 3 runs: 1 ok, 1 error, 1 timeout\n")
    assert done.returncode == 1


def test_a_program_given_as_records_is_one_clear_line(tmp_path):
    prog = tmp_path / "prog.txt"
    prog.write_text("import pulp\nprint(1)\n")
    done = run_tool("or-exec", str(prog))
    err = done.stderr.decode()
    assert done.returncode == 2 and "is not JSONL records" in err and "PROGRAM.py" in err
    assert err.count("\n") <= 4  # a usage line, not a dozen 'not valid JSON' lines


def test_records_get_a_summary_by_status():
    rec = {"id": "a", "flow": [{"role": "reasoner", "text": "```python\nprint(1)\n```\n"}]}
    done = run_tool("or-exec", input=json.dumps(rec) + "\n")
    assert "or-exec: 1 run: 1 ok" in done.stderr.decode()


if sys.platform != "linux":  # pragma: no cover
    pytest.skip("or-exec needs Linux", allow_module_level=True)


def test_ctrl_c_stops_the_server_without_a_traceback():
    import signal

    s = Server("--workers", "1")
    s.proc.send_signal(signal.SIGINT)
    assert s.proc.wait(60) == 0
    time.sleep(0.2)
    text = "".join(s.lines)
    assert "Traceback" not in text and text.rstrip().endswith("or-exec: stopped")
