"""or-score on outputs other tools wrote (issue 19): foreign response shapes, protocols with a
tolerance, the answer-format check, and scoring by execution."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import read_jsonl
from or_common.scoring import canonical_protocol, compare
from or_score.cli import main as score_main


def score(records, *args):
    data = "".join(json.dumps(r) + "\n" for r in records)
    result = CliRunner().invoke(score_main, [*args, "-q"], input=data)
    return result, read_jsonl(result.stdout)


@pytest.mark.parametrize(
    "shape",
    [
        {"response": "</think>\\boxed{1160}"},
        {"completion": "So the optimum is \\boxed{1160}."},
        {
            "messages": [
                {"role": "user", "content": "Solve it."},
                {"role": "assistant", "content": "\\boxed{1160}"},
            ]
        },
        {"choices": [{"message": {"role": "assistant", "content": "\\boxed{1160}"}}]},
        {"choices": [{"text": "\\boxed{1160}", "finish_reason": "stop"}]},
    ],
)
def test_foreign_shapes_are_read(shape):
    result, out = score([{"id": "p", "answer": 1160, **shape}])
    assert result.exit_code == 0, result.stderr
    assert (out[0]["score"]["reason"], out[0]["score"]["prediction"]) == ("correct", 1160.0)


@pytest.mark.parametrize(
    "shape",
    [
        {"completion": "\\boxed{1160}", "finish_reason": "length"},
        {"choices": [{"text": "\\boxed{1160}", "finish_reason": "length"}]},
    ],
)
def test_an_openai_length_finish_is_truncated(shape):
    _, out = score([{"id": "p", "answer": 1160, **shape}])
    assert (out[0]["score"]["reason"], out[0]["score"]["correct"]) == ("truncated", False)


def test_a_shape_nobody_reads_is_a_file_line_error_naming_the_shapes():
    prompt_only = {
        "id": "p",
        "answer": 1,
        "messages": [{"role": "user", "content": "Solve it."}],  # a prompt, not a response
    }
    result, out = score([{"id": "q", "answer": 1, "output_text": "\\boxed{1}"}, prompt_only])
    assert result.exit_code == 1 and out == []
    expected = (
        "no response to score: expected 'flow' (or-gen), a string 'response' or 'completion',"
        " chat 'messages' ending with an assistant turn, or OpenAI 'choices'"
    )
    assert f"<stdin>:1: {expected}" in result.stderr
    assert f"<stdin>:2: {expected}" in result.stderr


def test_protocols_take_a_tolerance_and_stamp_it():
    # ORLM's rule at 1e-4 (as Evo-Step runs ORLM's harness): rounded, then relative 1e-4
    assert compare(1160.4, 1160.0, "orlm:1e-4")[0] is True  # both round to 1160
    assert compare(1161.0, 1160.0, "orlm:1e-4")[0] is False  # 8.6e-4 > 1e-4
    assert compare(1161.0, 1160.0, "orlm")[0] is True
    assert compare(1160.0005, 1160.0, "strict:1e-6")[0] is True
    assert compare(1160.01, 1160.0, "strict:1e-6")[0] is False
    assert compare(1160.01, 1160.0, "sirl:1e-4")[0] is True
    assert [canonical_protocol(p) for p in ("orlm:0.05", "orlm:0.0001", "strict:1e-3")] == [
        "orlm",
        "orlm:1e-4",
        "strict",
    ]
    record = {"id": "p", "answer": 1160, "response": "\\boxed{1161}"}
    for spec, stamped, correct in (
        ("orlm", "orlm", True),
        ("orlm:1e-4", "orlm:1e-4", False),
        ("strict:1e-6", "strict:1e-6", False),
        ("sirl:1e-3", "sirl:1e-3", True),
    ):
        _, out = score([record], "--protocol", spec)
        assert (out[0]["score"]["protocol"], out[0]["score"]["correct"]) == (stamped, correct)


@pytest.mark.parametrize("spec", ["orml", "orlm:", "orlm:-1", "orlm:abc", "strict:inf"])
def test_a_bad_protocol_is_a_usage_error(spec):
    result = CliRunner().invoke(score_main, ["--protocol", spec], input="")
    assert result.exit_code == 2 and "--protocol" in result.stderr


@pytest.mark.parametrize(
    "text,fmt,correct",
    [
        ("\\boxed{327.66 \\text{ dollars}}", "units", True),
        ("\\boxed{\\$327.66}", "units", True),
        ("\\boxed{20x + 30y = 327.66}", "formula", True),
        ("\\boxed{x = 3, \\text{cost} = 327.66}", "formula", True),
        ("\\boxed{300} then \\boxed{327.66}", "several_boxes", True),
        ("\\boxed{327.66}", "ok", True),
        ("\\boxed{3.2766 \\times 10^{2}}", "ok", True),
        ("\\boxed{3.2766\\times10^2}", "ok", True),
        ("\\boxed{327.66\\%}", "units", True),
        ("no box", None, False),
    ],
)
def test_format_check_flags_without_changing_the_verdict(text, fmt, correct):
    _, out = score([{"id": "p", "answer": 327.66, "response": text}])
    assert (out[0]["score"]["format"], out[0]["score"]["correct"]) == (fmt, correct)


PROGRAM = (
    "import pulp\n"
    "m = pulp.LpProblem('m', pulp.LpMaximize)\n"
    "x = pulp.LpVariable('x', 0, 10)\n"
    "m += 3 * x\n"
    "m += x <= 4\n"
    "m.solve(pulp.PULP_CBC_CMD(msg=0))\n"
    "print('Status:', pulp.LpStatus[m.status])\n"
    "print('Optimal objective value:', pulp.value(m.objective))\n"
    "print('x =', x.value())\n"
)


def test_scoring_by_execution_runs_the_last_block_in_the_sandbox():
    code = f"Here is the model.\n```python\n{PROGRAM}```\n"
    records = [
        {"id": "right", "answer": 12, "completion": code},
        {"id": "wrong", "answer": 13, "completion": code},
        {"id": "fails", "answer": 12, "completion": "```python\nraise ValueError('no')\n```"},
        {"id": "boxed", "answer": 12, "completion": code + "\\boxed{11}"},  # the box decides
    ]
    off, out = score(records)  # off by default: solver code alone is no answer
    assert [r["score"]["reason"] for r in out] == ["no_answer", "no_answer", "no_answer", "wrong"]
    result, out = score(records, "--execute", "--exec-timeout", "20")
    assert result.exit_code == 0, result.stderr
    got = [
        (r["id"], r["score"]["reason"], r["score"]["prediction"], r["score"].get("by")) for r in out
    ]
    assert got == [
        ("right", "correct", 12.0, "execution"),
        ("wrong", "wrong", 12.0, "execution"),
        ("fails", "exec_error", None, "execution"),
        ("boxed", "wrong", 11.0, None),
    ]
    assert out[2]["score"]["exec_status"] == "error"


def test_scoring_by_execution_reads_a_recorded_output_without_running():
    """ORLM's released outputs: the code ran with ORLM's appended print; its output is kept as
    the executor segment (the code below would fail here: coptpy is not installed)."""
    record = {
        "id": "orlm",
        "answer": "3050.0",
        "flow": [
            {"role": "reasoner", "text": "```python\nimport coptpy\n```\n"},
            {
                "role": "executor",
                "status": "ok",
                "text": "```output\nBest solution   : +inf\nJust print the best solution: 3050.0\n```\n",
            },
        ],
    }
    none = json.loads(json.dumps(record))
    none["flow"][1]["text"] = "```output\nSolution status : infeasible\nNo Best Solution\n```\n"
    result, out = score([record, none], "--execute", "--protocol", "orlm")
    assert result.exit_code == 0, result.stderr
    assert [(r["score"]["reason"], r["score"]["prediction"]) for r in out] == [
        ("correct", 3050.0),
        ("wrong", "infeasible"),
    ]


def test_printed_optimum_rule():
    from or_score.execute import printed_optimum

    assert printed_optimum("Status: Optimal\nTotal cost = 3,050.50\nx = 3\n") == 3050.5
    assert printed_optimum("Objective value: 1.5e+03\n") == 1500.0
    assert printed_optimum("x = 3\ny = 4\n") is None  # no line names the objective
    assert printed_optimum("The problem is infeasible\n") == "infeasible"
    assert printed_optimum("Optimal solution found.\nObjective: 7\nUnbounded ray\n") == "unbounded"


def test_or_filter_correct_reads_the_same_shapes():
    from or_filter.cli import main as filter_main

    records = [
        {"id": "c", "answer": 5, "completion": "\\boxed{5}"},
        {"id": "m", "answer": 5, "messages": [{"role": "assistant", "content": "\\boxed{5}"}]},
        {"id": "w", "answer": 5, "choices": [{"text": "\\boxed{6}"}]},
        {"id": "q", "answer": 5, "question": "a problem, no response"},
    ]
    data = "".join(json.dumps(r) + "\n" for r in records)
    result = CliRunner().invoke(filter_main, ["--correct", "-q"], input=data)
    assert [r["id"] for r in read_jsonl(result.stdout)] == ["c", "m"]
