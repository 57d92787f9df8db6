"""The checks every `or-*` tool must pass (csvkit-style shared baseline).

Tools that stream records register a minimal valid input record in STREAM_TOOLS; every tool,
built or not, must answer --help quickly (no heavy imports) with an Examples block.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import TOOLS, read_jsonl, run_tool, tool_path

#: tool -> (extra args, a function making the i-th valid input record)
STREAM_TOOLS = {
    "or-score": (
        [],
        lambda i: {
            "id": f"p{i}",
            "sample": 0,
            "answer": 10 + i,
            "benchmark": "b",
            "flow": [{"role": "reasoner", "text": f"</think>\\boxed{{{10 + i}}}"}],
            "unknown": {"nested": [1, 2, i]},
        },
    ),
    "or-filter": (
        [],
        lambda i: {
            "id": f"p{i}",
            "benchmark": "b",
            "question": f"q {i}",
            "answer": i,
            "unknown": [i],
        },
    ),
    "or-annotate": (
        [],
        lambda i: {
            "id": f"p{i}",
            "sample": 0,
            "answer": 3,
            "flow": [{"role": "reasoner", "text": "</think>\\boxed{3}"}],
            "unknown": [i],
        },
    ),
    # records without a code block pass through or-exec unchanged (fast, no sandbox work)
    "or-exec": (
        [],
        lambda i: {
            "id": f"p{i}",
            "sample": 0,
            "flow": [{"role": "reasoner", "text": f"no code {i}"}],
            "unknown": [i],
        },
    ),
}
# or-gen and or-intervene need model endpoints for real records; their stream behaviour is
# tested against fake servers in test_gen.py and test_intervene.py; or-sft and or-grpo train
# models (their input handling is tested in test_sft.py and test_grpo*.py)
HEAVY = {
    "torch",
    "vllm",
    "transformers",
    "trl",
    "deepspeed",
    "verl",
    "litellm",
    "matplotlib",
    "pulp",
    "scipy",
    "ray",
}


def lines(tool: str, n: int) -> str:
    return "".join(json.dumps(STREAM_TOOLS[tool][1](i)) + "\n" for i in range(n))


@pytest.mark.parametrize("tool", TOOLS)
def test_help_works_and_ends_with_an_example(tool):
    result = run_tool(tool, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout.decode()
    assert "Examples:" in text
    last = text.rstrip().splitlines()[-1].strip()
    assert last.startswith(("or-", "cat ", "head ")), last


@pytest.mark.parametrize("tool", TOOLS)
def test_help_imports_nothing_heavy(tool):
    """`--help` stays well under a second because the CLI module imports no heavy library."""
    module = tool.replace("-", "_") + ".cli"
    code = f"import sys, {module}; print(sorted(m for m in {sorted(HEAVY)!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_empty_input(tool):
    result = run_tool(tool, *STREAM_TOOLS[tool][0], input="")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b""


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_bad_line_is_reported_with_file_and_line_and_others_are_written(tool, tmp_path):
    good = lines(tool, 3).splitlines(keepends=True)
    path = tmp_path / "in.jsonl"
    path.write_text(good[0] + "{not json\n" + good[1] + "[1, 2]\n" + good[2] + '{"id": "x"')
    result = run_tool(tool, *STREAM_TOOLS[tool][0], str(path))
    assert result.returncode == 1
    err = result.stderr.decode()
    assert f"{path}:2: not valid JSON" in err
    assert f"{path}:4: expected a JSON object" in err
    assert f"{path}:6: truncated last line" in err
    assert "Traceback" not in err
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_strict_stops_at_first_bad_line(tool):
    good = lines(tool, 2).splitlines(keepends=True)
    result = run_tool(tool, *STREAM_TOOLS[tool][0], "--strict", input=good[0] + "junk\n" + good[1])
    assert result.returncode == 1
    assert b"<stdin>:2:" in result.stderr
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["p0"]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_binary_junk_and_huge_lines_never_traceback(tool):
    junk = os.urandom(2000).replace(b"\n", b"") + b"\n" + b'{"id": "' + b"x" * 2_000_000 + b'"\n'
    result = run_tool(tool, *STREAM_TOOLS[tool][0], input=junk + lines(tool, 1).encode())
    assert result.returncode == 1
    assert b"Traceback" not in result.stderr
    assert b"<stdin>:1:" in result.stderr and b"<stdin>:2:" in result.stderr
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["p0"]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_ids_and_unknown_keys_preserved(tool):
    result = run_tool(tool, *STREAM_TOOLS[tool][0], input=lines(tool, 5))
    assert result.returncode == 0, result.stderr
    out = read_jsonl(result.stdout)
    for i, rec in enumerate(out):
        original = STREAM_TOOLS[tool][1](i)
        for key, value in original.items():
            assert rec[key] == value


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_stdin_and_file_give_the_same_output(tool, tmp_path):
    data = lines(tool, 4)
    path = tmp_path / "in.jsonl"
    path.write_text(data)
    from_stdin = run_tool(tool, *STREAM_TOOLS[tool][0], input=data)
    from_file = run_tool(tool, *STREAM_TOOLS[tool][0], str(path))
    from_dash = run_tool(tool, *STREAM_TOOLS[tool][0], "-", input=data)
    assert from_stdin.stdout == from_file.stdout == from_dash.stdout != b""


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_gzip_input_and_output(tool, tmp_path):
    import gzip

    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(gzip.compress(lines(tool, 3).encode()))
    out = tmp_path / "out.jsonl.gz"
    result = run_tool(tool, *STREAM_TOOLS[tool][0], str(path), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_jsonl(gzip.decompress(out.read_bytes()))] == ["p0", "p1", "p2"]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_resume_repairs_a_truncated_last_line(tool, tmp_path):
    data = lines(tool, 6)
    full = run_tool(tool, *STREAM_TOOLS[tool][0], input=data).stdout.splitlines(keepends=True)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"".join(full[:2]) + full[2][:15])  # a writer killed mid-line
    result = run_tool(tool, *STREAM_TOOLS[tool][0], "-o", str(out), "--resume", input=data)
    assert result.returncode == 0, result.stderr
    assert b"removed an incomplete last line" in result.stderr
    assert sorted(r["id"] for r in read_jsonl(out)) == [f"p{i}" for i in range(6)]


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_resume_needs_output(tool):
    result = run_tool(tool, *STREAM_TOOLS[tool][0], "--resume", input="")
    assert result.returncode == 2
    assert b"--resume needs -o" in result.stderr


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_killed_run_resumed_writes_every_record_exactly_once(tool, tmp_path):
    n = 15_000  # a kill at 200 kB lands mid-run for every tool; more only costs CI time
    src = tmp_path / "in.jsonl"
    src.write_text(lines(tool, n))
    out = tmp_path / "out.jsonl"
    proc = subprocess.Popen(
        [tool_path(tool), *STREAM_TOOLS[tool][0], str(src), "-o", str(out), "-q"]
    )
    deadline = time.monotonic() + 60
    while (
        (not out.exists() or out.stat().st_size < 200_000)
        and time.monotonic() < deadline
        and proc.poll() is None
    ):
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_bytes().count(b"\n")
    result = run_tool(tool, *STREAM_TOOLS[tool][0], str(src), "-o", str(out), "--resume", "-q")
    assert result.returncode == 0, result.stderr
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == n and len(set(ids)) == n
    assert 0 < partial < n  # the kill really happened mid-run


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_closed_pipe_ends_quietly(tool):
    proc = subprocess.run(
        f"{tool_path(tool)} {' '.join(STREAM_TOOLS[tool][0])} | head -n 1",
        shell=True,
        input=lines(tool, 20_000).encode(),
        capture_output=True,
        timeout=60,
    )
    assert proc.stdout.count(b"\n") == 1
    assert b"Traceback" not in proc.stderr and b"BrokenPipe" not in proc.stderr


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_limit_and_shards_partition_the_input(tool):
    data = lines(tool, 40)
    limited = read_jsonl(
        run_tool(tool, *STREAM_TOOLS[tool][0], "--limit", "7", "-q", input=data).stdout
    )
    assert [r["id"] for r in limited] == [f"p{i}" for i in range(7)]
    shards = [
        read_jsonl(
            run_tool(tool, *STREAM_TOOLS[tool][0], "--shard", f"{i}/3", "-q", input=data).stdout
        )
        for i in range(3)
    ]
    ids = sorted(r["id"] for s in shards for r in s)
    assert ids == sorted(f"p{i}" for i in range(40))
    assert all(s for s in shards)


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_output_naming_an_input_is_a_usage_error(tool, tmp_path):
    path = tmp_path / "in.jsonl"
    data = lines(tool, 3)
    path.write_text(data)
    for args in (["-o", str(path)], ["-o", str(tmp_path / "." / "in.jsonl"), "--resume"]):
        result = run_tool(tool, *STREAM_TOOLS[tool][0], str(path), *args)
        assert result.returncode == 2
        assert result.stderr.decode().count("\n") == 1, result.stderr
        assert b"is also an input" in result.stderr
        assert path.read_text() == data  # untouched


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_output_into_a_missing_directory_is_one_line(tool, tmp_path):
    result = run_tool(
        tool, *STREAM_TOOLS[tool][0], "-o", str(tmp_path / "nope" / "out.jsonl"), input=""
    )
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1, result.stderr
    assert b"does not exist" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.parametrize("tool", STREAM_TOOLS)
def test_gzip_on_stdin(tool):
    import gzip

    result = run_tool(tool, *STREAM_TOOLS[tool][0], input=gzip.compress(lines(tool, 3).encode()))
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["p0", "p1", "p2"]


@pytest.mark.parametrize(
    "tool,command",
    [
        ("or-score", []),
        ("or-score", ["score"]),
        ("or-score", ["report"]),
        ("or-filter", []),
        ("or-annotate", []),
        ("or-annotate", ["annotate"]),
        ("or-annotate", ["report"]),
        ("or-annotate", ["agree"]),
        ("or-intervene", []),
    ],
)
def test_help_cites_nothing_outside_the_repository(tool, command):
    """Help says things in words: a reference to a document users do not have ("SPEC §1") is
    no explanation."""
    import importlib

    from click.testing import CliRunner

    main = importlib.import_module(tool.replace("-", "_") + ".cli").main
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "SPEC" not in result.stdout and "§" not in result.stdout
