"""or-gen in-process: the CLI through click's CliRunner against scripted fake OpenAI-compatible
servers in a thread, a stand-in sandbox, and the real Qwen3 tokenizer where token-exactness is
checked. Engines, retries and the subprocess smoke tests are in test_gen_engines.py."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from conftest import read_jsonl
from fakeserver import FakeServer
from helpers import CODE, QWEN, FakeRunner, problems, script
from or_common.records import flow_text
from or_common.scoring import flow_correct
from or_common.tokens import encode_record, load_tokenizer, prompt_ids, text_ids
from or_common.turn import FENCE_STOP
from or_gen.cli import main
from or_gen.session import ReasonerSession

FENCE_IDS = [13874, 3989]  # "``" "`\n": the closing fence line with the real Qwen3 tokenizer


@pytest.fixture(autouse=True)
def fake_sandbox(monkeypatch):
    runner = FakeRunner()
    monkeypatch.setattr(ReasonerSession, "make_runner", lambda self, limits: runner)
    return runner


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer(QWEN)


def gen(url: str, *extra: str, input: str, tokenizer: str = QWEN, env=None):
    """Run or-gen in-process; returns (result, records)."""
    args = ["--model", "tiny-reasoner", "--api-base", url, "--tokenizer", tokenizer]
    args += ["--retry-backoff", "0.01", "-q", *extra]
    result = CliRunner().invoke(main, args, input=input, env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result, read_jsonl(result.stdout)


def test_loop_runs_real_code_and_never_keeps_fake_output(qwen, fake_sandbox):
    with FakeServer(script, tokenizer=qwen) as server:
        result, out = gen(server.url, "--n", "2", input=problems("good", "good"))
    assert result.exit_code == 0, result.stderr
    assert sorted((r["id"], r["sample"]) for r in out) == [
        (f"q{i}", s) for i in (0, 1) for s in (0, 1)
    ]
    for rec in out:
        assert [s["role"] for s in rec["flow"]] == ["reasoner", "executor", "reasoner"]
        assert rec["flow"][0]["text"] == CODE.format(value=145.0)
        assert rec["flow"][1]["text"] == "```output\nObjective: 145.0\n```\n"
        assert rec["flow"][1]["status"] == "ok" and "999" not in flow_text(rec["flow"])
        assert rec["flow"][2]["text"].endswith("\\boxed{145}.")  # no <|im_end|> text in the flow
        g = rec["gen"]
        assert (g["finish"], g["executions"], g["rounds"], g["backend"]) == ("stop", 1, 2, "openai")
        assert (g["prompt_version"], g["temperature"], g["top_p"]) == ("reasoner-v1", 0.6, 0.95)
        assert g["token_ids"] == "engine" and g["prompt_tokens"] == len(
            prompt_ids(qwen, rec["messages"])
        )
        assert rec["extra"] in (0, 1) and flow_correct(rec, rec["flow"]) is True
    assert fake_sandbox.codes == ["print('Objective:', 145.0)\n"] * 4


@pytest.mark.parametrize("kind", ["good", "spill", "coder"])
def test_requests_are_token_exact(qwen, kind):
    """Each request's prompt is exactly the previous one + the ids generated (verbatim, or
    re-aligned where the stop fell inside a token) + the output block's ids; the final record
    encodes to what the server saw plus what it generated last."""
    with FakeServer(script, tokenizer=qwen) as server:
        result, out = gen(server.url, "--n", "1", "--max-tokens", "400", input=problems(kind))
        requests, responses = server.requests, server.responses
    rec = out[0]
    sent = [r["prompt"] for r in requests]
    assert sent[0] == prompt_ids(qwen, rec["messages"])
    for prev, cur, resp in zip(sent, sent[1:], responses, strict=False):
        gen_ids = resp["token_ids"]
        assert cur[: len(prev)] == prev
        middle = cur[len(prev) :]
        out_block = qwen.decode(middle, skip_special_tokens=False).split(FENCE_STOP, 1)[-1]
        if kind == "spill":  # "```" + "\n\n\n" ran past the fence: only its kept "\n" re-tokenized
            n = len(gen_ids) - 1
            assert middle[:n] == gen_ids[:n] and gen_ids[n - 1 :] != FENCE_IDS
            assert middle[n : n + 1] == text_ids(qwen, "\n")  # every id before the cut kept
        else:
            assert middle[: len(gen_ids)] == gen_ids
        assert middle[-len(text_ids(qwen, out_block)) :] == text_ids(qwen, out_block)
    for r in requests:
        assert r["stop"] == [FENCE_STOP, "```output"] and r["include_stop_str_in_output"] is True
        assert r["return_token_ids"] is True and r["skip_special_tokens"] is False
    enc = encode_record(qwen, rec)
    expected = sent[-1] + responses[-1]["token_ids"]  # ends with <|im_end|> when the turn ended
    if rec["flow"][-1]["role"] == "executor":  # the budget ran out right after an output block
        expected += text_ids(qwen, rec["flow"][-1]["text"])
    assert enc.input_ids == expected
    g = rec["gen"]
    assert enc.response_tokens == g["completion_tokens"] + g["executor_tokens"]
    if g["finish"] == "length":  # the budget was spent (an output block may end past it)
        assert enc.response_tokens >= 400 and kind == "coder"
    assert len(sent) == rec["gen"]["rounds"]


def test_server_that_ignores_stop_gets_its_code_cut_at_the_first_fence_and_run(qwen, fake_sandbox):
    with FakeServer(script, tokenizer=qwen, ignore_stop=True) as server:
        result, out = gen(server.url, "--n", "1", input=problems("good"))
    rec = out[0]
    assert [s["role"] for s in rec["flow"]] == ["reasoner", "executor", "reasoner"]
    assert rec["flow"][0]["text"] == CODE.format(value=145.0)
    assert rec["flow"][1]["text"] == "```output\nObjective: 145.0\n```\n" and fake_sandbox.codes
    assert "999" not in flow_text(rec["flow"]) and rec["gen"]["finish"] == "stop"
    assert encode_record(qwen, rec).input_ids[-1] == qwen.convert_tokens_to_ids("<|im_end|>")


def test_executions_are_capped_and_later_blocks_skipped(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        _, out = gen(server.url, "--n", "1", "--max-tokens", "300", input=problems("coder"))
    rec = out[0]
    statuses = [s["status"] for s in rec["flow"] if s["role"] == "executor"]
    assert statuses[:4] == ["ok"] * 4 and set(statuses[4:]) == {"skipped"} and len(statuses) > 4
    skipped = [s for s in rec["flow"] if s.get("status") == "skipped"][0]
    assert "no longer available" in skipped["text"]
    g = rec["gen"]
    assert g["executions"] == 4 and g["finish"] == "length"
    assert (
        g["completion_tokens"] + g["executor_tokens"]
        == 300
        == encode_record(qwen, rec).response_tokens
    )  # the budget is counted in the token layer's tokens


def test_think_block_never_closed_ends_at_the_budget(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        _, out = gen(server.url, "--n", "1", "--max-tokens", "50", input=problems("thinker"))
    rec = out[0]
    assert rec["gen"]["finish"] == "length" and rec["gen"]["completion_tokens"] == 50
    text = flow_text(rec["flow"])
    assert ("hmm " * 5000).startswith(text) and len(text_ids(qwen, text)) == 50
    assert flow_correct(rec, rec["flow"]) is not True


def test_model_opening_its_own_output_block_is_stopped(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        _, out = gen(server.url, "--n", "1", input=problems("faker"))
    rec = out[0]
    assert "```output" not in flow_text(rec["flow"]) and rec["gen"]["finish"] == "fake_output"


def test_text_only_server_gets_text_prompts_and_the_text_is_retokenized(qwen, tokenizer_dir):
    with FakeServer(script) as server:  # refuses token-id prompts, returns no ids
        result, out = gen(
            server.url, "--n", "2", input=problems("good"), tokenizer=str(tokenizer_dir)
        )
        prompts = [r["prompt"] for r in server.requests]
    assert result.exit_code == 0, result.stderr
    assert sum(isinstance(p, list) for p in prompts) <= 2  # found out once per concurrent start
    assert all(isinstance(p, str) for p in prompts[2:])
    for rec in out:
        assert rec["gen"]["token_ids"] == "retokenized" and rec["gen"]["finish"] == "stop"
        assert rec["flow"][2]["text"].endswith("\\boxed{145}.")


def test_chat_mode_sends_outputs_as_user_turns(tokenizer_dir):
    with FakeServer(script) as server:
        result, out = gen(
            server.url, "--n", "1", "--chat", input=problems("good"), tokenizer=str(tokenizer_dir)
        )
        last = server.requests[-1]["messages"]
    assert result.exit_code == 0, result.stderr
    assert [m["role"] for m in last] == ["user", "assistant", "user"]
    assert last[2]["content"] == "```output\nObjective: 145.0\n```\n"
    assert out[0]["gen"]["mode"] == "chat" and out[0]["flow"][2]["text"].endswith("\\boxed{145}.")


def test_api_bases_are_load_balanced_and_sticky(qwen):
    with FakeServer(script, tokenizer=qwen) as a, FakeServer(script, tokenizer=qwen) as b:
        result, out = gen(a.url, "--n", "4", "--api-base", b.url, input=problems(*["good"] * 3))
        seen = {"a": a.requests, "b": b.requests}
    assert result.exit_code == 0 and seen["a"] and seen["b"]
    for rec in out:  # both rounds of a trajectory went to the same server (its prefix cache)
        first = prompt_ids(qwen, rec["messages"])
        where = {
            name
            for name, reqs in seen.items()
            for r in reqs
            if r["prompt"][: len(first)] == first and len(r["prompt"]) > len(first)
        }
        assert len(where) == 1


def test_transient_faults_are_retried_and_retry_after_is_honoured(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        server.faults = ["429:0.4", "500", "truncate", "503"]
        t = time.monotonic()
        result, out = gen(server.url, "--n", "1", "--concurrency", "1", input=problems("good"))
        elapsed = time.monotonic() - t
        n_requests = len(server.requests)
    assert result.exit_code == 0, result.stderr
    assert out[0]["gen"]["finish"] == "stop" and "error" not in out[0]["gen"]
    assert n_requests == 4 + 2 and elapsed >= 0.4  # backoff 0.01 s, but the server asked 0.4 s


def test_permanent_errors_are_not_retried_and_failures_become_error_records(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        server.faults = ["400"] * 2  # the id prompt, then the same prompt as text: both refused
        result, out = gen(server.url, "--n", "1", "--concurrency", "1", input=problems("good"))
        assert len(server.requests) == 2
        server.faults = ["500"] * 100
        again, out3 = gen(server.url, "--n", "3", "--retries", "2", input=problems("good"))
    assert result.exit_code == 1 and out[0]["gen"]["error"]["type"] == "BadRequestError"
    assert again.exit_code == 1 and sorted(r["sample"] for r in out3) == [0, 1, 2]
    for rec in out3:
        assert rec["gen"]["finish"] == "error" and "3 attempts" in rec["gen"]["error"]["message"]


def test_connection_refused_becomes_error_records(qwen):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result, out = gen(
        f"http://127.0.0.1:{port}/v1", "--n", "2", "--retries", "1", input=problems("good")
    )
    assert result.exit_code == 1 and [r["gen"]["finish"] for r in out] == ["error", "error"]
    # the SDK's aiohttp transport calls a refused connection a timeout: the cause says what it was
    message = out[0]["gen"]["error"]["message"]
    assert f"Connect call failed ('127.0.0.1', {port})" in message, message


def test_resume_replays_cached_requests(qwen, tmp_path):
    path = tmp_path / "run.jsonl"
    with FakeServer(script, tokenizer=qwen) as server:
        first, _ = gen(server.url, "--n", "2", "-o", str(path), input=problems("good", "good"))
    assert first.exit_code == 0, first.stderr
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(
        "".join(lines[:1]) + lines[1][:30]
    )  # a crash: one record kept, one half-written
    with FakeServer(script, tokenizer=qwen) as server:
        server.faults = ["500"] * 100  # any request that reaches the server fails
        again, _ = gen(
            server.url, "--n", "2", "-o", str(path), "--resume", "--retries", "0",
            input=problems("good", "good"),
        )  # fmt: skip
        paid = len(server.requests)
    assert again.exit_code == 0, again.stderr
    assert paid == 0  # everything was replayed from run.jsonl.cache
    recs = read_jsonl(path)
    assert sorted((r["id"], r["sample"]) for r in recs) == [
        (f"q{i}", s) for i in (0, 1) for s in (0, 1)
    ]
    assert all(r["gen"]["finish"] == "stop" for r in recs)


def test_bad_problem_lines(qwen):
    data = '{"id": "a"}\n' + problems("good") + "not json\n"
    with FakeServer(script, tokenizer=qwen) as server:
        result, out = gen(server.url, "--n", "1", input=data)
    assert result.exit_code == 1
    assert "<stdin>:1: missing field 'question'" in result.stderr
    assert "<stdin>:3: not valid JSON" in result.stderr
    assert [r["id"] for r in out] == ["q0"]


def test_summary_names_problems_and_trajectories(qwen):
    with FakeServer(script, tokenizer=qwen) as server:
        args = ["--model", "m", "--api-base", server.url, "--tokenizer", QWEN, "--n", "3"]
        result = CliRunner().invoke(main, args, input=problems("good", "good"))
    assert result.stderr.strip().splitlines()[-1] == "or-gen: 2 problems in, 6 trajectories out"


def test_progress_counts_trajectories_with_a_rate():
    from types import SimpleNamespace

    from or_common.cli import IOOptions
    from or_common.progress import RunProgress
    from or_gen.cli import GenRun

    run = GenRun("or-gen", IOOptions(), unit="trajectories", per_record=3)
    run._progress = RunProgress("or-gen", "trajectories", None, per_record=3)
    run._progress.take()  # one problem read, three of its samples written
    for _ in range(3):
        run._progress.finish(1)
        run.trajectory_done(SimpleNamespace(tokens=3000, executions=3))
    fields = run._progress.fields()
    assert fields["n"] == 3 and fields["rate"] != "-" and "tok/s" in fields["extra"]


def test_an_unreachable_sandbox_is_an_error_record_never_an_execution_status(qwen, fake_sandbox):
    """`or-exec serve` down for good: the trajectory stops with gen.error (so --resume redoes it)
    instead of carrying a made-up `killed` output into the flow."""
    from or_exec.server import SandboxUnavailable

    async def down(code, limits=None, prelude=()):
        raise SandboxUnavailable("http://127.0.0.1:9/run: connection refused after 5 attempts")

    fake_sandbox.run = down
    with FakeServer(script, tokenizer=qwen) as server:
        result, out = gen(server.url, "--n", "1", input=problems("good"))
    assert result.exit_code == 1
    (record,) = out
    assert record["gen"]["error"]["type"] == "SandboxUnavailable"
    assert record["gen"]["finish"] == "error"
    assert not any(seg["role"] == "executor" for seg in record["flow"])
