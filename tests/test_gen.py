"""or-gen: the reflective loop through the real litellm client against scripted fake servers,
and the transformers backend with a tiny random Qwen3 model."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import read_jsonl, run_tool, write_jsonl
from fakeserver import FakeServer
from or_common.records import flow_text
from or_gen.engine import FENCE_STOP, resolve_stop
from tiny import make_model

CODE = "Let me write the model.\n```python\nprint('Objective:', {value})\n```\n"


def rendered(tokenizer_dir, question: str) -> str:
    from or_gen.prompt import REASONER_PROMPT, build_messages, load_tokenizer, render_prompt

    return render_prompt(
        load_tokenizer(str(tokenizer_dir)), build_messages(question, REASONER_PROMPT, 4)
    )


def behaviour(prompt) -> str:
    text = prompt if isinstance(prompt, str) else json.dumps(prompt)
    m = re.search(r"\[behaviour:(\w+)\]", text)
    return m.group(1) if m else "good"


def script(prompt, body) -> str:
    """The fake Reasoner. Its continuation depends on the problem's behaviour tag and on how many
    outputs the sandbox already inserted."""
    text = prompt if isinstance(prompt, str) else "".join(m["content"] for m in prompt)
    outputs = text.count("```output\n")
    kind = behaviour(prompt)
    if kind == "good":
        if outputs == 0:  # writes code, then a fake output of its own: it must never reach the flow
            return (
                CODE.format(value=145.0)
                + "```output\nObjective: 999\n```\n</think>\n\n\\boxed{999}"
            )
        return "The solver printed 145.0, which fits the limits.</think>\n\nThe maximum profit is \\boxed{145}."
    if kind == "coder":  # never stops writing code
        return f"Again.\n```python\nprint({outputs})\n```\n"
    if kind == "thinker":  # never closes the think block
        return "hmm " * 5000
    if kind == "faker":  # opens an output block without any code
        return "I already know:\n```output\n42\n```\n"
    raise AssertionError(kind)


def gen_args(server_url: str, tokenizer_dir, *extra: str) -> list[str]:
    return [
        "--model",
        "tiny-reasoner",
        "--api-base",
        server_url,
        "--tokenizer",
        str(tokenizer_dir),
        "--retry-backoff",
        "0.01",
        "--workers",
        "2",
        "-q",
        *extra,
    ]


def problems(*behaviours: str) -> str:
    return "".join(
        json.dumps(
            {
                "id": f"q{i}",
                "benchmark": "fake",
                "question": f"Maximize profit of shop {i}. [behaviour:{b}]",
                "answer": 145,
                "extra": i,
            }
        )
        + "\n"
        for i, b in enumerate(behaviours)
    )


def test_loop_runs_real_code_and_never_keeps_fake_output(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "2"),
            input=problems("good", "good"),
        )
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    out = read_jsonl(result.stdout)
    assert sorted((r["id"], r["sample"]) for r in out) == [
        ("q0", 0),
        ("q0", 1),
        ("q1", 0),
        ("q1", 1),
    ]
    for rec in out:
        assert [s["role"] for s in rec["flow"]] == ["reasoner", "executor", "reasoner"]
        assert rec["flow"][0]["text"] == CODE.format(value=145.0)
        assert (
            rec["flow"][1]["text"] == "```output\nObjective: 145.0\n```\n"
            and rec["flow"][1]["status"] == "ok"
        )
        assert "999" not in flow_text(rec["flow"])
        assert rec["flow"][2]["text"].endswith("\\boxed{145}.")
        gen = rec["gen"]
        assert (gen["finish"], gen["executions"], gen["rounds"], gen["backend"]) == (
            "stop",
            1,
            2,
            "openai",
        )
        assert (
            gen["prompt_version"] == "reasoner-v1"
            and gen["temperature"] == 0.6
            and gen["top_p"] == 0.95
        )
        assert rec["extra"] in (0, 1) and rec["messages"][0]["role"] == "user"
    scored = read_jsonl(run_tool("or-score", "-q", input=result.stdout).stdout)
    assert all(r["score"]["correct"] for r in scored)


def test_every_request_continues_the_exact_prefix(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "1"),
            input=problems("good", "coder"),
        )
        requests = server.requests
    out = {r["id"]: r for r in read_jsonl(result.stdout)}
    for rec in out.values():
        prompt = rendered(tokenizer_dir, rec["question"])
        full = prompt + flow_text(rec["flow"])
        mine = [
            r["prompt"]
            for r in requests
            if f"[behaviour:{behaviour(rec['question'])}]" in r["prompt"]
        ]
        assert mine[0] == prompt
        for sent in mine:
            assert full.startswith(sent)  # each request is the rendered prompt plus the flow so far
        assert len(mine) == rec["gen"]["rounds"]
        for r in requests:
            assert (
                r["stop"] == [FENCE_STOP, "```output"] and r["include_stop_str_in_output"] is True
            )


def test_executions_are_capped_and_later_blocks_skipped(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "1", "--max-tokens", "300"),
            input=problems("coder"),
        )
    rec = read_jsonl(result.stdout)[0]
    statuses = [s["status"] for s in rec["flow"] if s["role"] == "executor"]
    assert statuses[:4] == ["ok"] * 4 and set(statuses[4:]) == {"skipped"} and len(statuses) > 4
    assert (
        "no longer available" in [s for s in rec["flow"] if s.get("status") == "skipped"][0]["text"]
    )
    assert rec["gen"]["executions"] == 4 and rec["gen"]["finish"] == "length"
    assert rec["gen"]["completion_tokens"] + rec["gen"]["executor_tokens"] >= 300


def test_think_block_never_closed_ends_at_the_budget(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "1", "--max-tokens", "50"),
            input=problems("thinker"),
        )
    rec = read_jsonl(result.stdout)[0]
    assert rec["gen"]["finish"] == "length" and len(flow_text(rec["flow"])) == 200
    assert (
        read_jsonl(run_tool("or-score", "-q", input=result.stdout).stdout)[0]["score"]["reason"]
        == "truncated"
    )


def test_model_opening_its_own_output_block_is_stopped(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen", *gen_args(server.url, tokenizer_dir, "--n", "1"), input=problems("faker")
        )
    rec = read_jsonl(result.stdout)[0]
    assert "```output" not in flow_text(rec["flow"])
    assert rec["gen"]["finish"] == "fake_output"


def test_transient_faults_are_retried(tokenizer_dir):
    with FakeServer(script) as server:
        server.faults = ["429", "500", "truncate", "hang", "503"]
        result = run_tool(
            "or-gen",
            *gen_args(
                server.url,
                tokenizer_dir,
                "--n",
                "1",
                "--request-timeout",
                "1",
                "--concurrency",
                "1",
            ),
            input=problems("good"),
        )
        n_requests = len(server.requests)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rec = read_jsonl(result.stdout)[0]
    assert rec["gen"]["finish"] == "stop" and "error" not in rec["gen"]
    assert n_requests == 5 + 2  # every fault retried, then the two rounds of the trajectory


def test_persistent_failure_becomes_an_error_record(tokenizer_dir):
    with FakeServer(script) as server:
        server.faults = ["500"] * 100
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "3", "--retries", "2"),
            input=problems("good"),
        )
    assert result.returncode == 1
    out = read_jsonl(result.stdout)
    assert sorted(r["sample"] for r in out) == [0, 1, 2]  # nothing lost, nothing duplicated
    for rec in out:
        assert rec["gen"]["finish"] == "error"
        assert (
            rec["gen"]["error"]["tool"] == "or-gen"
            and "3 attempts" in rec["gen"]["error"]["message"]
        )
    assert (
        read_jsonl(run_tool("or-score", "-q", input=result.stdout).stdout)[0]["score"]["reason"]
        == "gen_error"
    )


def test_connection_refused_becomes_error_records(tokenizer_dir):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run_tool(
        "or-gen",
        *gen_args(f"http://127.0.0.1:{port}/v1", tokenizer_dir, "--n", "2", "--retries", "1"),
        input=problems("good"),
    )
    assert result.returncode == 1
    assert [r["gen"]["finish"] for r in read_jsonl(result.stdout)] == ["error", "error"]


def test_api_bases_are_load_balanced_and_sticky(tokenizer_dir):
    with FakeServer(script) as a, FakeServer(script) as b:
        args = gen_args(a.url, tokenizer_dir, "--n", "4", "--api-base", b.url)
        result = run_tool("or-gen", *args, input=problems("good", "good", "good"))
        seen = {"a": [r["prompt"] for r in a.requests], "b": [r["prompt"] for r in b.requests]}
    assert result.returncode == 0
    assert seen["a"] and seen["b"]
    out = read_jsonl(result.stdout)
    for rec in out:  # both rounds of a trajectory went to the same server (its prefix cache)
        first_round = rendered(tokenizer_dir, rec["question"])
        second_round = first_round + rec["flow"][0]["text"] + rec["flow"][1]["text"]
        where = {name for name, prompts in seen.items() if second_round in prompts}
        assert len(where) == 1


def test_resume_replays_cached_requests(tokenizer_dir, tmp_path):
    out = tmp_path / "run.jsonl"
    with FakeServer(script) as server:
        first = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "2", "-o", str(out)),
            input=problems("good", "good"),
        )
    assert first.returncode == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:1]) + lines[1][:30])  # a crash: one record kept, one half-written
    with FakeServer(script) as server:
        server.faults = ["500"] * 100  # any request that reaches the server fails
        again = run_tool(
            "or-gen",
            *gen_args(
                server.url, tokenizer_dir, "--n", "2", "-o", str(out), "--resume", "--retries", "0"
            ),
            input=problems("good", "good"),
        )
        paid = len(server.requests)
    assert again.returncode == 0, again.stderr.decode()[-2000:]
    assert paid == 0  # everything was replayed from run.jsonl.cache
    recs = read_jsonl(out)
    assert sorted((r["id"], r["sample"]) for r in recs) == [
        ("q0", 0),
        ("q0", 1),
        ("q1", 0),
        ("q1", 1),
    ]
    assert all(r["gen"]["finish"] == "stop" for r in recs)


def test_resume_with_nothing_left_does_not_import_litellm(tokenizer_dir, tmp_path):
    out = tmp_path / "run.jsonl"
    write_jsonl(out, [{"id": "q0", "sample": s, "flow": [], "gen": {}} for s in range(2)])
    src = tmp_path / "p.jsonl"
    src.write_text(problems("good"))
    code = (
        "import sys\nfrom or_gen.cli import main\n"
        f"sys.argv = ['or-gen', '--model', 'x', '--n', '2', '-o', {str(out)!r}, '--resume', {str(src)!r}, '-q']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print(e.code, 'litellm' in sys.modules, 'torch' in sys.modules, file=sys.stderr)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stderr.strip().splitlines()[-1] == "0 False False"


def test_chat_mode_sends_outputs_as_user_turns(tokenizer_dir):
    with FakeServer(script) as server:
        result = run_tool(
            "or-gen",
            *gen_args(server.url, tokenizer_dir, "--n", "1", "--chat"),
            input=problems("good"),
        )
        last = server.requests[-1]["messages"]
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    rec = read_jsonl(result.stdout)[0]
    assert [m["role"] for m in last] == ["user", "assistant", "user"]
    assert last[2]["content"] == "```output\nObjective: 145.0\n```\n"
    assert rec["gen"]["mode"] == "chat" and rec["flow"][2]["text"].endswith("\\boxed{145}.")


def test_bad_problem_lines(tokenizer_dir):
    data = '{"id": "a"}\n' + problems("good") + "not json\n"
    with FakeServer(script) as server:
        result = run_tool("or-gen", *gen_args(server.url, tokenizer_dir, "--n", "1"), input=data)
    assert result.returncode == 1
    assert (
        b"<stdin>:1: missing field 'question'" in result.stderr
        and b"<stdin>:3: not valid JSON" in result.stderr
    )
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["q0"]


def test_resolve_stop_for_servers_that_drop_the_stop_string():
    assert resolve_stop("code\n```python\nx=1", "stop", "") == (
        "code\n```python\nx=1" + FENCE_STOP,
        "fence",
    )
    assert resolve_stop("done \\boxed{1}", "stop", "") == ("done \\boxed{1}", "stop")
    assert resolve_stop("a\n```\nmore", "stop", "```python\n") == ("a\n```\n", "fence")
    assert resolve_stop("x```output", "stop", "") == ("x", "fake_output")
    assert resolve_stop("abc", "length", "") == ("abc", "length")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, tokenizer_dir):
    pytest.importorskip("torch", reason="the transformers backend needs torch")
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("model")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(path)
    make_model(path, len(tok))
    return path


def test_transformers_backend_with_a_tiny_qwen3(tiny_model):
    data = json.dumps({"id": "t", "question": "Maximize 3x.", "answer": 1}) + "\n"
    result = run_tool(
        "or-gen",
        "--backend",
        "transformers",
        "--model",
        str(tiny_model),
        "--n",
        "2",
        "--max-tokens",
        "24",
        "--workers",
        "1",
        "-q",
        input=data,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    out = read_jsonl(result.stdout)
    assert sorted(r["sample"] for r in out) == [0, 1]
    for rec in out:
        assert rec["gen"]["backend"] == "transformers" and rec["gen"]["finish"] in (
            "length",
            "stop",
            "fence",
        )
        assert 0 < rec["gen"]["completion_tokens"] <= 24
        assert flow_text(rec["flow"])  # random weights write garbage, but the loop ran for real


def test_concurrent_first_trajectories_share_one_engine_and_pool(tokenizer_dir):
    import asyncio

    from or_gen.cli import Backend, main

    # the real option defaults, as click would pass them
    ctx = main.make_context(
        "or-gen",
        [
            "--model",
            "tiny",
            "--api-base",
            "http://127.0.0.1:9/v1",
            "--tokenizer",
            str(tokenizer_dir),
        ],
    )
    shared = (
        "n_samples",
        "cache_path",
        "inputs",
        "output",
        "resume",
        "limit",
        "shard",
        "strict",
        "quiet",
        "verbose",
    )
    opts = {k: v for k, v in ctx.params.items() if k not in shared}
    backend = Backend(opts, None)

    async def go():
        try:
            built = await asyncio.gather(*(backend.get() for _ in range(6)))
            return {id(g) for g in built}, {id(g.engine) for g in built}
        finally:
            await backend.close()

    generators, engines = asyncio.run(go())
    assert len(generators) == 1 and len(engines) == 1
