"""or-score report with runs that are not all alike (issue 19): each run's own protocol, two
protocols side by side, warnings for mismatched protocols, duplicated (id, sample) pairs and
different problem sets, deltas over shared problems, the standard error, k = 1, --failures."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import write_jsonl
from or_common.scoring import score_record
from or_score.cli import main as score_main


def rec(pid, boxed, answer=100, sample=0, bench="b"):
    return {
        "id": pid,
        "sample": sample,
        "benchmark": bench,
        "answer": answer,
        "response": "</think>no box" if boxed is None else f"</think>\\boxed{{{boxed}}}",
    }


def report(*args):
    return CliRunner().invoke(score_main, ["report", *args])


def scored(records, protocol):
    return [score_record(json.loads(json.dumps(r)), protocol) for r in records]


# 103 against 100 is right under orlm (3 %), wrong under strict
LENIENT = [rec("p1", 103), rec("p2", 100), rec("p3", 50), rec("p4", 104)]


def test_a_run_scored_under_orlm_is_reported_under_orlm(tmp_path):
    run = write_jsonl(tmp_path / "orlm.jsonl", scored(LENIENT, "orlm"))
    result = report(str(run), "--format", "json")
    assert result.exit_code == 0 and result.stderr == ""
    out = json.loads(result.stdout)
    assert out["protocol"] == "orlm" and out["runs"][0]["protocol"] == "orlm"
    assert out["runs"][0]["benchmarks"]["b"]["pass@1"] == 0.75
    md = report(str(run), "--format", "markdown").stdout
    assert md.startswith("## pass@1 (%), protocol orlm\n")


def test_asking_another_protocol_warns_and_rescores(tmp_path):
    run = write_jsonl(tmp_path / "orlm.jsonl", scored(LENIENT, "orlm"))
    result = report(str(run), "--protocol", "strict", "--format", "json")
    assert result.exit_code == 0
    assert result.stderr == (
        "or-score report: warning: orlm: scored under orlm (4); reported under strict as asked"
        " (--protocol), re-scored where it differs\n"
    )
    assert json.loads(result.stdout)["runs"][0]["benchmarks"]["b"]["pass@1"] == 0.25


def test_two_protocols_side_by_side(tmp_path):
    run = write_jsonl(tmp_path / "run.jsonl", scored(LENIENT, "strict"))
    result = report(
        str(run), str(run), "--protocol", "strict", "--protocol", "orlm:1e-4",
        "--label", "strict", "--label", "orlm 1e-4", "--format", "markdown",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "## pass@1 (%), protocol per run"
    assert lines[2:6] == [
        "| run | protocol | b | macro |",
        "|---|---|---|---|",
        "| strict | strict | 25.0 | 25.0 |",
        "| orlm 1e-4 | orlm:1e-4 | 25.0 (+0.0) | 25.0 (+0.0) |",
    ]
    three = report(str(run), str(run), str(run), "--protocol", "strict", "--protocol", "orlm")
    assert three.exit_code == 2 and "got 2 --protocol for 3 runs" in three.stderr


def test_a_run_of_mixed_protocols_is_reported_under_strict_with_a_warning(tmp_path):
    mixed = scored(LENIENT[:2], "orlm") + LENIENT[2:]  # two scored under orlm, two unscored
    run = write_jsonl(tmp_path / "mixed.jsonl", mixed)
    result = report(str(run), "--format", "json")
    assert "mixed: records are scored under orlm (2), unscored (2), not one protocol" in (
        result.stderr
    )
    out = json.loads(result.stdout)["runs"][0]
    assert out["protocol"] == "strict" and out["benchmarks"]["b"]["pass@1"] == 0.25


def test_duplicates_and_different_problem_sets_are_warned_and_deltas_use_shared(tmp_path):
    base = write_jsonl(
        tmp_path / "base.jsonl",
        [rec("p1", 100), rec("p2", 1), rec("p3", 1), rec("p3", 1)],  # p3 sample 0 twice
    )
    new = write_jsonl(tmp_path / "new.jsonl", [rec("p1", 100), rec("p2", 100), rec("p9", 1)])
    result = report(str(base), str(new), "--format", "json")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        "or-score report: warning: base: (p3, sample 0) appears 2 times; each copy is counted",
        "or-score report: warning: b: base and new differ in problems (1 only in base, 1 only"
        " in new): its delta is over the 2 shared problems",
    ]
    runs = json.loads(result.stdout)["runs"]
    # over p1, p2: base 1/2, new 2/2 -> +0.5 (not 2/3 - 1/3 over the unequal sets)
    assert runs[1]["delta"]["b"] == {"pass@1": 0.5, "shared": 2}
    assert runs[1]["delta"]["macro"]["pass@1"] == 0.5


def test_standard_error_over_problems(tmp_path):
    records = [rec("p1", 100, sample=0), rec("p1", 1, sample=1)]
    records += [rec("p2", 1, sample=0), rec("p2", 1, sample=1)]
    records += [rec("p3", 100, sample=0), rec("p3", 100, sample=1)]
    run = write_jsonl(tmp_path / "run.jsonl", records)
    m = json.loads(report(str(run), "--format", "json").stdout)["runs"][0]
    # per problem 0.5, 0, 1: mean 0.5, sample sd 0.5, se = 0.5 / sqrt(3)
    assert m["benchmarks"]["b"]["pass@1_se"] == pytest.approx(0.5 / 3**0.5)
    assert m["macro"]["pass@1_se"] == pytest.approx(0.5 / 3**0.5)


def test_k_1_shows_one_pass_at_1_column_and_failures_are_listed(tmp_path):
    run = write_jsonl(
        tmp_path / "run.jsonl",
        [rec("p1", 100), rec("p2", "327.66 \\text{ dollars}"), rec("p3", None)],
    )
    result = report(str(run), "--format", "markdown", "--failures")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.startswith("| benchmark | problems"))
    assert header == (
        "| benchmark | problems | n | pass@1 | ±se | tokens | blocks | execs | failures | format |"
    )
    i = lines.index("#### failures of run")
    assert lines[i + 2 : i + 6] == [
        "| benchmark | id | sample | reason | prediction | format |",
        "|---|---|---|---|---|---|",
        "| b | p2 | 0 | wrong | 327.66 | units |",
        "| b | p3 | 0 | no_answer | – | – |",
    ]
