"""or-score: answer extraction, the command line, and the report (the rules are in test_scoring)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from conftest import FIXTURES, GOLDEN, ROOT, read_jsonl, run_tool, shared_data_or_skip
from helpers import trajectory
from hypothesis import given, settings
from hypothesis import strategies as st
from or_common.answers import answer_in, answer_region, parse_number, parse_truth
from or_score.cli import main as score_main

# (assistant text, expected prediction); None = no usable answer
EXTRACTION = [
    ("\\boxed{1160}", 1160.0),
    ("\\boxed{ 1160 }", 1160.0),
    ("\\boxed{-42}", -42.0),
    ("\\boxed{−42.5}", -42.5),
    ("\\boxed{1,160}", 1160.0),
    ("\\boxed{1{,}160}", 1160.0),
    ("\\boxed{12{,}345{,}678.9}", 12345678.9),
    ("\\boxed{1,234,567}", 1234567.0),
    ("\\boxed{1\\,000}", 1000.0),
    ("\\boxed{\\$1,160}", 1160.0),
    ("\\boxed{$1160.50}", 1160.5),
    ("\\boxed{€ 300}", 300.0),
    ("\\boxed{£2.5}", 2.5),
    ("\\boxed{12.5\\%}", 12.5),
    ("\\boxed{12.5%}", 12.5),
    ("\\boxed{\\frac{3}{4}}", 0.75),
    ("\\boxed{\\dfrac{10}{4}}", 2.5),
    ("\\boxed{\\tfrac{1}{8}}", 0.125),
    ("\\boxed{-\\frac{1}{2}}", -0.5),
    ("\\boxed{\\frac34}", 0.75),
    ("\\boxed{7/2}", 3.5),
    ("\\boxed{1.2 \\times 10^{4}}", 12000.0),
    ("\\boxed{1.2\\times10^4}", 12000.0),
    ("\\boxed{3 \\cdot 10^{-2}}", 0.03),
    ("\\boxed{1.5e3}", 1500.0),
    ("\\boxed{2E-3}", 0.002),
    ("\\boxed{\\text{1160}}", 1160.0),
    ("\\boxed{1160 \\text{ minutes}}", 1160.0),
    ("\\boxed{1160\\text{ dollars}}", 1160.0),
    ("\\boxed{\\textbf{98.6}}", 98.6),
    ("\\boxed{\\mathrm{infeasible}}", "infeasible"),
    ("\\boxed{\\text{Infeasible}}", "infeasible"),
    ("\\boxed{No feasible solution}", "infeasible"),
    ("\\boxed{\\text{unbounded}}", "unbounded"),
    ("\\boxed{\\infty}", "unbounded"),
    ("\\boxed{x = 20, y = 30, \\text{cost} = 1160}", 1160.0),
    ("\\boxed{Z^* = 450}", 450.0),
    ("\\boxed{\\approx 33.33}", 33.33),
    ("\\boxed{Total cost: 5000}", 5000.0),
    ("\\boxed{.5}", 0.5),
    ("\\boxed{+7}", 7.0),
    ("\\boxed{0}", 0.0),
    ("\\boxed{0.000}", 0.0),
    ("\\boxed{1160.}", 1160.0),
    ("\\boxed{\\left(1160\\right)}", None),  # parentheses around a number are not a fraction
    ("\\boxed 42", 42.0),
    ("\\fbox{17}", 17.0),
    ("\\boxed{{1160}}", 1160.0),
    ("\\boxed{20 and 30}", None),  # two numbers: ambiguous
    ("\\boxed{(20, 30)}", None),
    ("\\boxed{}", None),
    ("\\boxed{abc}", None),
    ("no box at all, answer is 1160", None),
    ("\\boxed{1160", None),  # unbalanced: no box
    ("first \\boxed{1} then \\boxed{2}", 2.0),  # the last box wins
    ("<think>maybe \\boxed{5}</think>\n\nSo \\boxed{6}", 6.0),
    (
        "thinking \\boxed{5} still thinking</think>\n\nThe answer is 6.",
        None,
    ),  # box only inside the thinking
    ("never closes the think block \\boxed{9}", 9.0),  # no </think>: the whole text is the answer
    ("\\boxed{\\displaystyle 1\\,234}", 1234.0),
    ("\\boxed{1 234 567}", 1234567.0),
    ("\\boxed{\\$ 2{,}400.00 \\text{ per week}}", 2400.0),
    ("\\boxed{3.1e+2}", 310.0),
]


@pytest.mark.parametrize("text,expected", EXTRACTION)
def test_extraction(text, expected):
    _, prediction = answer_in(answer_region(text))
    if isinstance(expected, float):
        assert prediction == pytest.approx(expected, rel=1e-12, abs=1e-12)
    else:
        assert prediction == expected


def test_nested_braces_and_escaped_braces():
    assert answer_in("\\boxed{\\frac{\\text{a}}{2}} x")[0] == "\\frac{\\text{a}}{2}"
    assert answer_in("\\boxed{\\{1\\}}")[0] == "\\{1\\}"


@given(
    st.floats(min_value=-1e12, max_value=1e12, allow_nan=False),
    st.sampled_from(["plain", "comma", "brace", "dollar", "sci", "text"]),
)
@settings(max_examples=500)
def test_number_parser_round_trips_formatted_numbers(value, style):
    if style == "plain":
        s = repr(value)
    elif style == "comma":
        s = f"{value:,.6f}"
        value = float(f"{value:.6f}")
    elif style == "brace":
        s = f"{value:,.6f}".replace(",", "{,}")
        value = float(f"{value:.6f}")
    elif style == "dollar":
        s = ("-" if value < 0 else "") + f"\\${abs(value):,.2f}"
        value = float(f"{value:.2f}")
    elif style == "sci":
        mant, exp = f"{value:.6e}".split("e")
        s = f"{mant} \\times 10^{{{int(exp)}}}"
        value = float(f"{value:.6e}")
    else:
        s = f"\\text{{{value}}}"
    parsed = parse_number(s)
    assert isinstance(parsed, float), s
    assert math.isclose(parsed, value, rel_tol=1e-9, abs_tol=1e-9), s


@given(st.text(max_size=60))
@settings(max_examples=500)
def test_number_parser_never_raises(s):
    result = parse_number(s)
    assert result is None or result in ("infeasible", "unbounded") or math.isfinite(result)


def test_truth_values():
    assert parse_truth("700.0") == 700.0
    assert parse_truth("1,160") == 1160.0
    assert parse_truth(5) == 5.0
    assert parse_truth(None) is None
    assert parse_truth("infeasible") == "infeasible"
    assert parse_truth("No Best Solution") == "infeasible"
    assert parse_truth("unbounded") == "unbounded"


def test_missing_fields_are_bad_input_with_location():
    data = (
        json.dumps({"id": "a", "flow": []})
        + "\n"
        + json.dumps({"id": "b", "answer": 1})
        + "\n"
        + json.dumps({"id": "c", "answer": [1], "flow": []})
        + "\n"
    )
    result = run_tool("or-score", input=data)
    assert result.returncode == 1
    err = result.stderr.decode()
    assert "<stdin>:1: missing field 'answer'" in err
    assert "<stdin>:2: no response to score: expected 'flow' (or-gen), a string 'response'" in err
    assert "<stdin>:3: field 'answer'" in err
    assert result.stdout == b""


def test_protocol_option_is_stamped():
    result = run_tool(
        "or-score",
        "--protocol",
        "orlm",
        input=json.dumps(trajectory("</think>\\boxed{1200}")) + "\n",
    )
    score = read_jsonl(result.stdout)[0]["score"]
    assert (
        score["protocol"] == "orlm" and score["correct"] is True and score["version"] == "score-v2"
    )


def test_report_markdown_matches_golden():
    """Regenerate with: uv run or-score report tests/fixtures/score/handwritten_a.jsonl
    tests/fixtures/score/handwritten_b.jsonl --label "hand-written A" --label "hand-written B" --format markdown > tests/golden/score_report.md
    (then check the numbers by hand: the fixture plans are in the test data)."""
    result = run_tool(
        "or-score",
        "report",
        "tests/fixtures/score/handwritten_a.jsonl",
        "tests/fixtures/score/handwritten_b.jsonl",
        "--label",
        "hand-written A",
        "--label",
        "hand-written B",
        "--format",
        "markdown",
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode() == (GOLDEN / "score_report.md").read_text()


def test_report_json_numbers_by_hand():
    result = run_tool(
        "or-score", "report", str(FIXTURES / "score/handwritten_a.jsonl"), "--format", "json"
    )
    summary = json.loads(result.stdout)["runs"][0]
    mini = summary["benchmarks"]["calm-mini"]
    # calm-1 2/4, calm-4 0/4, calm-5 1/4, calm-6 2/4
    assert mini["pass@1"] == pytest.approx((0.5 + 0 + 0.25 + 0.5) / 4)
    # pass@4 with 4 samples: a problem passes if any sample is correct -> 3 of 4
    assert mini["pass@k"] == pytest.approx(0.75) and mini["k"] == 4
    # majority: calm-1 145 (right), calm-4 42 (wrong), calm-5 0 (wrong), calm-6 tie 16/42 -> first seen 16 (right)
    assert mini["maj@k"] == pytest.approx(0.5)
    assert mini["reasons"] == {
        "correct": 5,
        "wrong": 8,
        "no_answer": 1,
        "exec_error": 1,
        "gen_error": 1,
    }
    assert summary["macro"]["pass@1"] == pytest.approx((0.3125 + 0.625) / 2)
    assert summary["models"] == ["handwritten-a"] and summary["protocol"] == "strict"


def test_report_pass_at_k_estimator():
    from or_score.report import pass_at_k

    assert pass_at_k(8, 0, 1) == 0.0
    assert pass_at_k(8, 8, 4) == 1.0
    assert pass_at_k(8, 2, 1) == pytest.approx(0.25)
    assert pass_at_k(8, 2, 4) == pytest.approx(1 - (6 * 5 * 4 * 3) / (8 * 7 * 6 * 5))


def test_report_table_goes_to_stderr_when_stdout_is_a_pipe_and_plot(tmp_path):
    png = tmp_path / "chart.png"
    result = run_tool(
        "or-score", "report", str(FIXTURES / "score/handwritten_a.jsonl"), "--plot", str(png)
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["runs"][0]["label"] == "handwritten_a"  # data on stdout
    assert "pass@1" in result.stderr.decode()  # the table on stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_pipes_into_report():
    scored = run_tool("or-score", "-q", str(FIXTURES / "score/handwritten_b.jsonl"))
    result = run_tool("or-score", "report", "-", "--format", "json", input=scored.stdout)
    assert json.loads(result.stdout)["runs"][0]["macro"]["pass@1"] == pytest.approx(
        (0.75 + 0.875) / 2
    )


def test_every_real_benchmark_record_scores(tmp_path):
    """Each shared benchmark answer (numbers, numeric strings, null) is understood: a response
    boxing the answer scores correct under every protocol, null answers are no_reference."""
    data = shared_data_or_skip()
    for path in sorted(data.glob("*.jsonl")):
        records = read_jsonl(path)
        for r in records:
            r["sample"] = 0
            r["flow"] = [
                {
                    "role": "reasoner",
                    "text": f"</think>\n\\boxed{{{r['answer']}}}"
                    if r["answer"] is not None
                    else "</think>",
                }
            ]
        src = tmp_path / path.name
        src.write_text("".join(json.dumps(r) + "\n" for r in records))
        for protocol in ("strict", "orlm", "sirl"):  # in-process: 45 tool starts cost ~9 s
            result = CliRunner().invoke(score_main, [str(src), "--protocol", protocol, "-q"])
            assert result.exit_code == 0, (path.name, result.stderr[:500])
            out = read_jsonl(result.stdout)
            assert len(out) == len(records)
            for r in out:
                expected = ("no_reference", None) if r["answer"] is None else ("correct", True)
                assert (r["score"]["reason"], r["score"]["correct"]) == expected, (
                    path.name,
                    r["id"],
                    r["answer"],
                )


def test_report_plot_into_a_missing_directory_or_onto_an_input(tmp_path):
    run = str(FIXTURES / "score/handwritten_a.jsonl")
    for plot in (str(tmp_path / "missing" / "t.png"), run):
        result = CliRunner().invoke(score_main, ["report", run, "--plot", plot])
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.stderr
        assert result.stdout == ""


def test_score_output_onto_its_input_is_refused(tmp_path):
    src = tmp_path / "run.jsonl"
    src.write_text(json.dumps(trajectory("</think>\\boxed{1160}")) + "\n")
    before = src.read_text()
    result = CliRunner().invoke(score_main, [str(src), "-o", str(src)])
    assert result.exit_code == 2 and "is also an input" in result.stderr
    assert result.stderr.count("\n") == 1 and src.read_text() == before


def test_report_of_an_empty_run_fails(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = CliRunner().invoke(score_main, ["report", str(empty), "--format", "markdown"])
    assert result.exit_code == 1
    assert f"{empty} holds no scorable record" in result.stderr
    assert result.stdout == ""  # no empty table to mistake for a result
