"""or_common: JSONL codec, resume repair, the stdout guard, records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from or_common.jsonl import BadLine, decode, dumps, repair_tail
from or_common.records import (
    RecordError,
    check_trajectory,
    find_error,
    flow_text,
    record_key,
    set_error,
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(), kids, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), json_values, max_size=6))
@settings(max_examples=300)
def test_jsonl_codec_round_trips_any_object(record):
    line = dumps(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # one record, one line
    assert decode(line, "f", 1) == record


@given(st.binary(max_size=200))
@settings(max_examples=300)
def test_decode_never_raises_anything_but_badline(raw):
    try:
        value = decode(raw + b"\n", "f.jsonl", 7)
    except BadLine as bad:
        assert str(bad).startswith("f.jsonl:7: ")
    else:
        assert isinstance(value, dict)


def test_repair_tail_cuts_only_an_incomplete_last_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "sa')
    assert "removed" in repair_tail(str(path))
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert repair_tail(str(path)) is None
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "x": ')  # complete-looking but broken
    repair_tail(str(path))
    assert path.read_bytes() == b'{"id": "a"}\n'


def test_repair_tail_on_a_single_long_partial_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id": "' + b"x" * 200_000)
    repair_tail(str(path))
    assert path.read_bytes() == b""


def test_stdout_guard_sends_library_prints_to_stderr():
    code = """
import os, sys
from or_common.guard import stdout_guard
with stdout_guard() as out:
    print("python print")
    os.write(1, b"c-level write\\n")
    out.write(b'{"id": 1}\\n')
print("after")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout == '{"id": 1}\nafter\n'
    assert "python print" in result.stderr and "c-level write" in result.stderr


def test_records_helpers():
    rec = {
        "id": 3,
        "sample": 2,
        "flow": [{"role": "reasoner", "text": "a"}, {"role": "executor", "text": "b"}],
    }
    assert record_key(rec) == ("3", 2)
    assert flow_text(rec["flow"]) == "ab"
    check_trajectory(rec)
    with pytest.raises(RecordError, match=r"flow\[0\].role"):
        check_trajectory({"id": 1, "flow": [{"role": "user", "text": ""}]})
    assert find_error(rec) is None
    set_error(rec, "or-exec", "Timeout", "pool died")
    assert rec["exec"]["error"] == {"tool": "or-exec", "type": "Timeout", "message": "pool died"}
    assert find_error(rec)["tool"] == "or-exec"


# -- the shared run loop: resume, output checks, gzip on stdin, capped complaints ------------


def _exec_like(fail: set[str]):
    """A minimal tool over the shared run loop that writes its findings under `exec` and marks
    the ids in `fail` as failed (as a server outage would)."""
    import click
    from or_common.cli import ToolRun, io_options

    @click.command()
    @io_options
    def tool(io):
        with ToolRun("or-exec", io) as run:
            for line in run.records():
                record = line.record
                if record["id"] in fail:
                    set_error(record, "or-exec", "ConnectionError", "server down")
                    run.failed()
                else:
                    record["exec"] = {"ok": True}
                run.write(record)
        sys.exit(run.exit_code)

    return tool


def _lines(*ids: str) -> str:
    return "".join(f'{{"id": "{i}", "sample": 0}}\n' for i in ids)


def test_resume_redoes_error_records_and_keeps_one_record_per_key(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "out.jsonl"
    first = CliRunner().invoke(
        _exec_like({"b"}), ["-o", str(out), "-q"], input=_lines("a", "b", "c")
    )
    assert first.exit_code == 1
    assert [("error" in r["exec"]) for r in map(json.loads, out.read_text().splitlines())] == [
        False,
        True,
        False,
    ]
    inode = out.stat().st_ino
    again = CliRunner().invoke(
        _exec_like(set()), ["-o", str(out), "--resume"], input=_lines("a", "b", "c")
    )
    assert again.exit_code == 0, again.stderr
    assert "removed 1 written with an error (they are redone)" in again.stderr
    assert "2 already done" in again.stderr
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == ["a", "b", "c"]
    assert all(r["exec"] == {"ok": True} for r in records)
    assert out.stat().st_ino != inode  # rewritten through a temporary file renamed over it
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left


def test_resume_drops_a_repeated_key(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "sample": 0, "exec": {"ok": true}}\n' * 2)
    result = CliRunner().invoke(
        _exec_like(set()), ["-o", str(out), "--resume"], input=_lines("a", "b")
    )
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in out.read_text().splitlines()] == ["a", "b"]


def test_an_error_of_another_tool_is_not_redone(tmp_path):
    from click.testing import CliRunner

    out = tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "sample": 0, "gen": {"error": {"tool": "or-gen"}}, "exec": {}}\n')
    result = CliRunner().invoke(_exec_like(set()), ["-o", str(out), "--resume"], input=_lines("a"))
    assert result.exit_code == 0 and "1 already done" in result.stderr
    assert out.read_text().count("\n") == 1


def test_gzip_on_stdin_is_read_transparently():
    import gzip

    from click.testing import CliRunner

    data = gzip.compress(_lines("a", "b").encode())
    result = CliRunner().invoke(_exec_like(set()), ["-q"], input=data)
    assert result.exit_code == 0, result.stderr
    assert [json.loads(x)["id"] for x in result.stdout.splitlines()] == ["a", "b"]


def test_repeated_identical_complaints_are_capped():
    from click.testing import CliRunner

    junk = "".join(f"junk {i}\n" for i in range(40)) + '{"id": "a"}\n' + "[1]\n" * 7
    result = CliRunner().invoke(_exec_like(set()), [], input=junk)
    assert result.exit_code == 1
    err = result.stderr.splitlines()
    assert sum("not valid JSON" in line for line in err) == 5 + 1  # 5 shown, then one sum-up
    assert (
        "... and 35 more like this: not valid JSON (unexpected character, expected a JSON value)"
        in err
    )
    assert "... and 2 more like this: expected a JSON object, got list" in err
    assert (
        "<stdin>:1: not valid JSON (unexpected character, expected a JSON value): 'junk 0'" in err
    )
    assert "47 bad input" in result.stderr  # every bad line is still counted
    assert [json.loads(x)["id"] for x in result.stdout.splitlines()] == ["a"]


def test_api_key_check_knows_which_models_need_one(monkeypatch):
    from or_common.providers import check_api_key
    from or_common.usage import UsageLine

    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    with pytest.raises(UsageLine, match="DEEPSEEK_API_KEY"):
        check_api_key("deepseek/deepseek-chat", None, None)
    check_api_key("deepseek/deepseek-chat", "http://127.0.0.1:9000/v1", None)  # self-hosted
    check_api_key("deepseek/deepseek-chat", None, "sk-given")
    check_api_key("hosted_vllm/judge", None, None)  # a provider we do not know: litellm's call
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-env")
    check_api_key("deepseek/deepseek-chat", None, None)


def test_model_clients_close_without_complaints_at_exit():
    """The model clients' HTTP sessions (aiohttp) are closed by `close_clients`, as or-intervene
    and or-annotate do at the end of a run; left open they print "Unclosed connector" at exit."""
    script = textwrap.dedent(
        """
        import asyncio, sys
        sys.path.insert(0, sys.argv[1])
        from fakeserver import FakeServer
        from or_common.llm import chat_answer, close_clients

        with FakeServer(lambda prompt, body: "fine") as server:
            async def go():
                try:
                    return await chat_answer(None, "judge", [{"role": "user", "content": "hi"}],
                                             api_base=server.url, api_key="x", retries=0,
                                             backoff=0.01)
                finally:
                    await close_clients()
            print(asyncio.run(go()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "tests")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "fine\n" and "Unclosed" not in result.stderr


# -- one definition of each count, of the final turn and of the output block --------------------


def test_code_blocks_are_counted_alike_by_the_report_and_the_training_metrics():
    """One closed block and one the turn was cut inside: a code block is a closed one
    (`or_common.flow.code_blocks`), so or-score's report (Table 2's "code blocks") and or-grpo's
    per-step metrics (Figure 6) both say 1, and the executions beside them agree too."""
    from or_common.flow import code_blocks, executions
    from or_common.turn import Turn
    from or_grpo.rollout import Rollout
    from or_score.runs import usage

    flow = [
        {"role": "reasoner", "text": "Model it.\n```python\nprint(1)\n```\n"},
        {"role": "executor", "text": "```output\n1\n```\n", "status": "ok", "seconds": 0.1},
        {"role": "reasoner", "text": "Once more.\n```python\nprint(2"},
    ]
    record = {"id": "p", "flow": flow, "gen": {"finish": "length", "completion_tokens": 40}}
    rollout = Rollout([], [], [], None, Turn(flow=flow, executions=1, finish="length"))
    tokens, blocks, runs = usage(record)
    assert blocks == rollout.metrics()["code_blocks"] == code_blocks(flow) == 1
    assert runs == rollout.metrics()["executions"] == executions(flow) == 1
    assert tokens == 40


def test_executions_leave_out_skipped_blocks():
    from or_common.flow import executions
    from or_common.turn import resumed_turn

    flow = [
        {"role": "reasoner", "text": "```python\nprint(1)\n```\n"},
        {"role": "executor", "text": "```output\n1\n```\n", "status": "error"},
        {"role": "reasoner", "text": "```python\nprint(2)\n```\n"},
        {"role": "executor", "text": "```output\nno\n```\n", "status": "skipped"},
    ]
    assert executions(flow) == resumed_turn(flow, 0).executions == 1


def test_final_turn_is_the_corrected_flows_over_the_generations():
    from or_common.flow import completion_tokens, final_finish, final_turn
    from or_common.scoring import finish_reason

    gen = {"finish": "length", "completion_tokens": 900, "model": "m"}
    corrected = {"gen": gen, "calm": {"final": {"finish": "stop", "completion_tokens": 700}}}
    assert final_turn(corrected) == {"finish": "stop", "completion_tokens": 700, "model": "m"}
    assert final_finish(corrected) == finish_reason(corrected) == "stop"
    assert completion_tokens(corrected) == 700
    # a field the final stamp lacks (or holds as null) is the generation's
    partial = {"gen": gen, "calm": {"final": {"finish": None}}}
    assert final_finish(partial) == "length" and completion_tokens(partial) == 900
    assert final_turn({"id": 1}) == {} and final_finish({"id": 1}) is None
    # another harness's record says it OpenAI's way: only the scorer reads that
    foreign = {"choices": [{"text": "x", "finish_reason": "length"}]}
    assert final_finish(foreign) is None and finish_reason(foreign) == "length"


def test_the_output_block_is_recognised_where_it_is_built():
    from or_common.turn import (
        SkippedResult,
        has_output_opening,
        is_output_block,
        output_block,
        output_body,
        text_after_outputs,
    )
    from or_exec.limits import ExecResult

    for result in (
        ExecResult("ok", 0, "Objective: 3\n", "", 0.1),
        ExecResult("error", 1, "", "Traceback\nNameError: x\n", 0.1),
        ExecResult("ok", 0, "", "", 0.1),
        SkippedResult("Code execution is no longer available."),
    ):
        block = output_block(result)
        assert is_output_block(block) and has_output_opening(block)
        assert output_block(result) == f"```output\n{output_body(block)}\n```\n"
    assert not is_output_block("```python\nprint(1)\n```\n")
    assert not has_output_opening("Let me run it.\n```python\n")
    assert text_after_outputs("no blocks at all") is None
    response = "```python\nprint(1)\n```\n```output\n```\n```\nAnswer: 1"
    assert text_after_outputs(response) == "\nAnswer: 1"
