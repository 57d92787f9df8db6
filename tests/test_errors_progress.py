"""Errors and progress a person can read (issue 19): the first failure of each cause on stderr
in one line and the summary's failures grouped by cause (or-gen, or-intervene, or-annotate),
one line for a model whose provider is misspelt or missing, progress that counts records as
they finish, or-sft's time left and its progress in a log, and `recipes/split.sh` that checks
its inputs before it writes anything.

Each test failed before the change it covers: the tools printed only `2 trajectories failed`,
ran `gemini-2.5-pro` into ~90 lines of litellm traceback, counted progress every 64 records read,
showed no time left for SFT steps slower than 30 s, and split.sh left an empty test.jsonl."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import ROOT, read_jsonl
from fakeserver import FakeServer
from helpers import FakeRunner, free_port
from or_gen.session import ReasonerSession


@pytest.fixture(autouse=True)
def fake_sandbox(monkeypatch):
    monkeypatch.setattr(ReasonerSession, "make_runner", lambda self, limits: FakeRunner())


PROBLEM = json.dumps({"id": "q0", "question": "Maximize 3x with x <= 48.", "answer": 144}) + "\n"
TRAJECTORY = {
    "id": "t",
    "sample": 0,
    "question": "Maximize 3x with x <= 48.",
    "answer": 144,
    "flow": [{"role": "reasoner", "text": "x = 48.</think>\n\nThe optimum is \\boxed{144}."}],
}
FAULT_400 = "BadRequestError: Error code: 400 - injected 400"
FAULT_500 = "InternalServerError: Error code: 500 - injected 500"


def or_gen(*args: str, input: str = PROBLEM):
    from or_gen.cli import main

    base = ["--model", "m", "--chat", "--retry-backoff", "0.01", "--concurrency", "1"]
    return CliRunner().invoke(main, [*base, *args], input=input)


# -- the first failure of each cause, the summary grouped by cause --------------------------------


def test_or_gen_says_why_requests_failed_not_only_how_many():
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    result = or_gen("--api-base", url, "--n", "2", "--retries", "1")
    assert result.exit_code == 1
    cause = f"Request timed out. ([Errno 111] Connect call failed ('127.0.0.1', {port}))"
    assert result.stderr.splitlines() == [
        f"or-gen: q0/0 failed: APITimeoutError: {cause} (after 2 attempts)",
        "or-gen: 1 problems in, 2 trajectories out, 2 trajectories failed",
        f"  2 × APITimeoutError: {cause}",
    ]
    assert [r["gen"]["finish"] for r in read_jsonl(result.stdout)] == ["error", "error"]


def test_or_gen_groups_failures_by_cause_and_says_each_cause_once():
    with FakeServer(lambda prompt, body: "x") as server:
        server.faults = ["400", "500", "400"]
        result = or_gen("--api-base", server.url, "--n", "3", "--retries", "0")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"or-gen: q0/0 failed: {FAULT_400} (after 1 attempts)",
        f"or-gen: q0/1 failed: {FAULT_500} (after 1 attempts)",
        "or-gen: 1 problems in, 3 trajectories out, 3 trajectories failed",
        f"  2 × {FAULT_400}",
        f"  1 × {FAULT_500}",
    ]


def test_or_gen_verbose_says_every_failure():
    with FakeServer(lambda prompt, body: "x") as server:
        server.faults = ["400", "400"]
        result = or_gen("--api-base", server.url, "--n", "2", "--retries", "0", "-v")
    failed = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert failed == [
        f"or-gen: q0/0 failed: {FAULT_400} (after 1 attempts)",
        f"or-gen: q0/1 failed: {FAULT_400} (after 1 attempts)",
    ]


def test_or_intervene_says_why_the_intervener_failed():
    from or_intervene.cli import main

    with FakeServer(lambda prompt, body: "x") as server:
        server.faults = ["500"] * 4
        args = ["--intervener", "openai/judge", "--intervener-api-base", server.url]
        args += ["--model", "m", "--api-base", server.url, "--chat", "--retries", "1"]
        args += ["--retry-backoff", "0.01", "--concurrency", "1"]
        records = "".join(json.dumps({**TRAJECTORY, "sample": s}) + "\n" for s in (0, 1))
        result = CliRunner().invoke(main, args, input=records)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[:3] == [
        f"or-intervene: t/0 failed: {FAULT_500} (after 2 attempts)",
        "or-intervene: 2 in, 2 out, 2 failed",
        f"  2 × {FAULT_500}",
    ]
    assert "  verdicts: error 2" in lines


def test_or_annotate_says_why_the_annotator_failed():
    from or_annotate.cli import main

    with FakeServer(lambda prompt, body: "x") as server:
        server.faults = ["500"]
        args = ["--annotator", "openai/judge", "--api-base", server.url, "--retries", "0"]
        args += ["--retry-backoff", "0.01"]
        result = CliRunner().invoke(main, args, input=json.dumps(TRAJECTORY) + "\n")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"or-annotate: t/0 failed: {FAULT_500} (after 1 attempts)",
        "or-annotate: 1 in, 1 out, 1 failed",
        f"  1 × {FAULT_500}",
    ]


def test_a_cause_leaves_out_numbers_retries_and_litellms_traceback():
    from or_common.errors import FailureTally, cause_of, describe, one_line

    litellm_text = (
        "litellm.APIConnectionError: Your default credentials were not found.\n"
        'Traceback (most recent call last):\n  File "/x/litellm/main.py", line 944\n'
        "google.auth.exceptions.DefaultCredentialsError: ... (after 6 attempts)"
    )
    error = {"type": "APIConnectionError", "message": litellm_text}
    assert describe(error) == (
        "APIConnectionError: litellm.APIConnectionError: Your default credentials were not found."
    )
    long = {"type": "BadRequestError", "message": "context length 33012 > 32768 (after 1 attempts)"}
    other = {
        "type": "BadRequestError",
        "message": "context length 40960 > 32768 (after 3 attempts)",
    }
    assert cause_of(long) == cause_of(other) == "BadRequestError: context length N > N"
    assert one_line("a\n  b", limit=10) == "a b" and one_line("x" * 20, limit=10) == "x" * 9 + "…"
    said: list[str] = []
    tally = FailureTally("or-x", said.append)
    for where, err in (("a/0", long), ("a/1", other), ("b/0", error)):
        tally.add(where, err)
    assert said == [
        f"or-x: a/0 failed: {describe(long)}",
        f"or-x: b/0 failed: {describe(error)}",
    ]
    assert tally.lines() == [
        "  2 × BadRequestError: context length 33012 > 32768",
        f"  1 × {describe(error)}",
    ]


# -- a model whose provider is misspelt or missing: one line, before anything runs --------------


def _providers_line(option: str, model: str, what: str, base_flag: str) -> str:
    from or_common.llm import PROVIDERS, import_litellm

    known = {str(getattr(p, "value", p)) for p in import_litellm().provider_list}
    return (
        f"Error: {option} {model}: {what}; a hosted model is PROVIDER/MODEL with PROVIDER one of "
        f"{', '.join(sorted(PROVIDERS))} (or one of litellm's {len(known - PROVIDERS)} others), "
        f"or a served one with {base_flag} URL"
    )


@pytest.mark.parametrize(
    ("model", "what"),
    [
        ("gemini-2.5-pro", "no provider (did you mean gemini/gemini-2.5-pro?)"),
        ("gemni/gemini-2.5-pro", "unknown provider 'gemni' (did you mean gemini/gemini-2.5-pro?)"),
    ],
)
def test_an_unknown_provider_is_one_line_naming_the_known_ones(model, what):
    from or_intervene.cli import main

    args = ["--intervener", model, "--model", "m", "--api-base", "http://127.0.0.1:9/v1"]
    result = CliRunner().invoke(main, [*args, "--chat"], input=json.dumps(TRAJECTORY) + "\n")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        _providers_line("--intervener", model, what, "--intervener-api-base")
    ]


def test_a_provider_without_credentials_is_one_line(monkeypatch):
    from or_annotate.cli import main

    for name in ("VERTEXAI_PROJECT", "VERTEXAI_LOCATION"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(
        main, ["--annotator", "vertex_ai/gemini-2.5-pro"], input=json.dumps(TRAJECTORY) + "\n"
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        "Error: --annotator vertex_ai/gemini-2.5-pro: litellm's check for vertex_ai finds no "
        "VERTEXAI_PROJECT, VERTEXAI_LOCATION in the environment; set them, or pass --api-key, "
        "or point --api-base at a self-hosted server"
    ]
    bare = CliRunner().invoke(main, ["--annotator", "gemini-2.5-pro"], input="")
    assert bare.exit_code == 2
    assert bare.stderr.splitlines() == [
        _providers_line(
            "--annotator", "gemini-2.5-pro", "no provider (did you mean gemini/gemini-2.5-pro?)",
            "--api-base",
        )
    ]  # fmt: skip


# -- progress counts records as they finish -------------------------------------------------------


def _slow_jobs_tool(seen: list[dict]):
    """A tool like or-exec: 24 jobs read at once, finishing one by one, in order."""
    from or_common.cli import ToolRun, io_options
    from or_common.concurrency import run_concurrently, threaded_aiter

    @click.command()
    @io_options
    def tool(io):
        async def go(run: ToolRun) -> None:
            turn = asyncio.Condition()
            state = {"next": 0, "read": 0}

            async def one(line) -> None:
                i = int(line.record["id"])
                async with turn:
                    state["read"] += 1
                    turn.notify_all()
                    await turn.wait_for(lambda: state["next"] == i and state["read"] == 24)
                    if i == 0:
                        seen.append(run._progress.fields())  # all read, none done
                    run.write(line.record)
                    seen.append(run._progress.fields())
                    state["next"] += 1
                    turn.notify_all()

            await run_concurrently(threaded_aiter(iter(run.records())), 24, one)

        with ToolRun("or-x", io, unit="jobs") as run:
            asyncio.run(go(run))

    return tool


def test_progress_counts_jobs_as_they_finish_not_as_they_are_read(tmp_path, monkeypatch):
    monkeypatch.setattr("or_common.cli.stderr_is_terminal", lambda: True)
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"id": f"{i:02d}"}) + "\n" for i in range(24)))
    seen: list[dict] = []
    result = CliRunner().invoke(_slow_jobs_tool(seen), [str(path)])
    assert result.exit_code == 0, result.stderr
    total = path.stat().st_size
    assert seen[0]["n"] == 0 and seen[0]["completed"] == 0 and seen[0]["total"] == total
    assert [s["n"] for s in seen[1:]] == list(range(1, 25))
    assert seen[12]["completed"] == pytest.approx(total / 2)
    assert seen[-1]["completed"] == pytest.approx(total)


def test_progress_of_a_record_by_record_tool_counts_every_record(tmp_path, monkeypatch):
    from or_common.cli import ToolRun, io_options

    monkeypatch.setattr("or_common.cli.stderr_is_terminal", lambda: True)
    seen: list[dict] = []

    @click.command()
    @io_options
    def tool(io):
        with ToolRun("or-x", io) as run:
            for n, line in enumerate(run.records()):
                seen.append(run._progress.fields())
                if n % 2:  # a filter drops half: a dropped record is finished too
                    run.write(line.record)
            seen.append(run._progress.fields())

    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"id": f"{i:03d}"}) + "\n" for i in range(100)))
    result = CliRunner().invoke(tool, [str(path)])
    assert result.exit_code == 0, result.stderr
    assert [s["n"] for s in seen] == [*range(100), 100]
    assert seen[-1]["completed"] == pytest.approx(path.stat().st_size)


# -- or-sft: time left for slow steps, and progress in a log ----------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sft_shows_the_time_left_when_a_step_takes_minutes():
    from or_sft.outputs import Progress

    clock = Clock()
    progress = Progress(True, terminal=True, clock=clock)
    progress.start(10, 0)
    try:
        for step in (1, 2, 3):
            clock.now += 90  # a step of 90 s: longer than rich's 30 s speed window
            progress.advance(step)
        task = progress._bar.tasks[0]
        assert task.time_remaining == pytest.approx(7 * 90)
    finally:
        progress.stop()


def test_sft_progress_in_a_log_is_a_line_every_half_minute_with_the_time_left():
    from or_sft.outputs import Progress

    clock, lines = Clock(), []
    progress = Progress(True, terminal=False, every=30, clock=clock, emit=lines.append)
    progress.start(4, 0)
    for step in (1, 2, 3, 4):
        clock.now += 20 if step < 3 else 60
        progress.advance(step)
        if step == 2:
            progress.note({"loss": 0.5, "tokens_per_s": 1234.4})
    progress.stop()
    assert lines == [
        "or-sft: training 4 steps",
        "or-sft: step 2/4 · 0:00:40 elapsed · 0:00:40 left",
        "or-sft: step 3/4 · loss 0.5000 · 1,234 tok/s · 0:01:40 elapsed · 0:00:33 left",
        "or-sft: step 4/4 · loss 0.5000 · 1,234 tok/s · 0:02:40 elapsed · 0:00:00 left",
    ]
    quiet: list[str] = []
    off = Progress(False, terminal=False, clock=clock, emit=quiet.append)
    off.start(4, 0)
    off.advance(1)
    off.stop()
    assert quiet == []


# -- recipes/split.sh checks its inputs before it writes anything ------------------------------


def _split(tmp_path: Path, data: Path, splits: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "DATA": str(data),
        "OUT": str(tmp_path / "splits"),
        "SPLITS": splits,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", str(ROOT / "recipes/split.sh")], env=env, capture_output=True, text=True
    )


def test_split_with_missing_data_writes_nothing_and_says_so_in_one_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "nl4opt.jsonl").write_text(PROBLEM)
    result = _split(tmp_path, data, "nl4opt:1:0:0 mamo_easy:0:0:2 optmath:0:0:1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"split.sh: DATA={data} has no mamo_easy.jsonl optmath.jsonl (download them with "
        "`just data` and set DATA=data, or pick files that exist with "
        'SPLITS="FILE:SFT:RL:TEST ..."); nothing written'
    ]
    assert not (tmp_path / "splits").exists()


def test_split_that_fails_half_way_leaves_no_split_behind(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "nl4opt.jsonl").write_text(PROBLEM)
    (data / "optmath.jsonl").write_text("not json\n")
    result = _split(tmp_path, data, "optmath:0:0:1 nl4opt:1:0:0")
    assert result.returncode != 0
    assert list((tmp_path / "splits").iterdir()) == []
    assert re.search(r"optmath\.jsonl:1: not valid JSON", result.stderr), result.stderr
