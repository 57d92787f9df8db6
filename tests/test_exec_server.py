"""or-exec serve and its client: the server's limits are ceilings, every malformed request is a
400 (never a 500, never a crashed tier), and the client turns transport trouble into an error of
its own, never into a job status."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from or_exec.cli import probe_line
from or_exec.limits import ExecResult, Limits
from or_exec.pool import Pool
from or_exec.server import make_app, parse_run

CEILINGS = Limits(timeout=1, memory_mb=512, max_output=4096)


def test_client_limits_are_lowered_never_raised():
    assert CEILINGS.capped({"timeout": 25}).timeout == 1
    assert CEILINGS.capped({"timeout": 1e9}).timeout == 1
    assert CEILINGS.capped({"timeout": 0.5}).timeout == 0.5
    assert CEILINGS.capped({"memory_mb": 1_000_000}).memory_mb == 512
    assert CEILINGS.capped({"memory_mb": 128}).memory_mb == 128
    assert CEILINGS.capped({"cpu_seconds": 50}).cpu_seconds == 2  # default: timeout + 1
    assert CEILINGS.capped(None) == CEILINGS


@pytest.mark.parametrize(
    "limits",
    [
        {"timeout": math.nan},
        {"timeout": math.inf},
        {"timeout": -1},
        {"timeout": 0},
        {"timeout": "3"},
        {"timeout": True},
        {"memory_mb": -1},
        {"memory_mb": 1.5},
        {"max_output": "x"},
        {"processes": [1]},
        {"bogus": 1},
        [1, 2],
        "fast",
    ],
)
def test_bad_limits_are_refused(limits):
    with pytest.raises(ValueError):
        CEILINGS.capped(limits)


@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b"[]",
        b'"code"',
        b"{}",
        b'{"code": 5}',
        b'{"code": "print(1)", "prelude": 5}',
        b'{"code": "print(1)", "prelude": ["x = 1", 2]}',
        b'{"code": "print(1)", "extra": 1}',
        b'{"code": "print(\\"\\ud800\\")"}',  # a lone surrogate
        b'{"code": "print(1)", "prelude": ["\\udfff"]}',
        b'{"code": "print(1)", "limits": {"timeout": NaN}}',
        b'{"code": "print(1)", "limits": {"timeout": Infinity}}',
        b'{"code": "print(1)", "limits": {"timeout": 1e999}}',
        b'{"code": "print(1)", "limits": {"timeout": "3"}}',
    ],
)
def test_malformed_requests_are_value_errors(body):
    with pytest.raises(ValueError):
        parse_run(body, CEILINGS)


def test_good_request_parses():
    body = json.dumps({"code": "print(1)", "prelude": ["x = 1"], "limits": {"timeout": 9}})
    code, prelude, limits, _ = parse_run(body.encode(), CEILINGS)
    assert (code, prelude, limits.timeout, limits.memory_mb) == ("print(1)", ["x = 1"], 1, 512)


def test_result_without_exit_code_round_trips():
    died = ExecResult("killed", None, "", "", 0.0, message="the sandbox parent died")
    data = json.loads(json.dumps(died.to_dict()))
    assert "exit_code" not in data
    assert ExecResult.from_dict(data) == died


def test_probe_line_is_cut_at_a_word():
    line = probe_line(
        "no caller environment", "ok", " ".join(f"'VARIABLE_{i}'," for i in range(40))
    )
    assert len(line) <= 160 and line.endswith("…")
    assert line.rsplit(" ", 1)[0].endswith(",")  # the last shown word is whole
    assert probe_line("x", "ok", "short\noutput") == "  x: ok: short output"


async def _serve_and_post(bodies: list[bytes]) -> list[tuple[int, dict]]:
    from aiohttp.test_utils import TestClient, TestServer

    pool = Pool(workers=1, limits=CEILINGS)
    protections = await pool.start(["pulp"])
    client = TestClient(TestServer(make_app(pool, protections)))
    await client.start_server()
    try:
        answers = []
        for body in bodies:
            resp = await client.post("/run", data=body)
            answers.append((resp.status, await resp.json()))
        stats = await (await client.get("/stats")).json()
        answers.append((200, stats))
        return answers
    finally:
        await client.close()
        await pool.close()


def test_server_limits_are_ceilings_and_bad_input_is_400():
    sleep = {"code": "import time\ntime.sleep(3)\nprint('woke')", "limits": {"timeout": 10}}
    bodies = [
        json.dumps(sleep).encode(),
        b'{"code": "print(1)", "limits": {"timeout": NaN}}',
        b'{"code": "print(1)", "limits": {"max_output": "x"}}',
        b'{"code": "print(1)", "prelude": 5}',
        b'{"code": "print(\\"\\ud800\\")"}',
        b'{"code": "print(6 * 7)"}',
    ]
    answers = asyncio.run(_serve_and_post(bodies))
    (s0, slept), *bad, (s5, fine), (_, stats) = answers
    assert s0 == 200 and slept["status"] == "timeout" and slept["seconds"] < 2.5
    assert [status for status, _ in bad] == [400, 400, 400, 400]
    assert all(body["error"].startswith("bad request") for _, body in bad)
    assert (s5, fine["status"], fine["stdout"]) == (200, "ok", "42\n")
    assert stats["respawns"] == 0


def test_a_taken_port_is_one_line_not_a_traceback():
    import socket

    from conftest import run_tool

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_tool("or-exec", "serve", "--port", str(port), timeout=60)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert f"cannot serve on 127.0.0.1:{port}".encode() in result.stderr
    assert b"serving" not in result.stderr  # it never served


def test_an_unreachable_sandbox_server_is_one_line_before_any_record(monkeypatch, tmp_path):
    from click.testing import CliRunner
    from or_exec import server
    from or_exec.cli import main

    async def down(self, tiers=None):
        raise server.SandboxUnavailable("sandbox server http://127.0.0.1:9 unreachable for 120 s")

    monkeypatch.setattr(server.RemotePool, "start", down)
    record = {"id": "a", "flow": [{"role": "reasoner", "text": "```python\nprint(1)\n```\n"}]}
    result = CliRunner().invoke(
        main, ["--sandbox", "http://127.0.0.1:9", "-q"], input=json.dumps(record) + "\n"
    )
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.strip() == "Error: sandbox server http://127.0.0.1:9 unreachable for 120 s"
