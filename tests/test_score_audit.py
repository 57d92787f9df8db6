"""or-score audit: suspects for wrong reference answers (issue 19), on hand-made runs and on the
real benchmark files with their other versions (../shared/data/alt)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import SHARED_DATA, read_jsonl, shared_data_or_skip, write_jsonl
from or_score.cli import main as score_main

Q1 = "A farm grows wheat and corn on 100 acres with 40 workers. Maximize profit."
Q2 = "A bakery bakes bread and cake with 50 kg of flour and 8 ovens. Minimize cost."


def traj(pid, sample, boxed, status="ok", answer=60, question=Q1):
    return {
        "id": pid,
        "sample": sample,
        "benchmark": "b",
        "question": question,
        "answer": answer,
        "flow": [
            {"role": "reasoner", "text": "```python\nprint(1)\n```\n"},
            {"role": "executor", "text": "```output\n1\n```\n", "status": status},
            {"role": "reasoner", "text": f"</think>\\boxed{{{boxed}}}"},
        ],
    }


def audit(*args):
    return CliRunner().invoke(score_main, ["audit", *args])


def test_majority_that_disagrees_and_ran_ok_is_a_suspect(tmp_path):
    records = [traj("p1", i, b) for i, b in enumerate([50, 50, 50, 60])]  # 3/4 say 50, ref 60
    records += [traj("p2", i, 50, status="error") for i in range(4)]  # their code failed
    records += [
        traj("p3", i, b, question=Q2) for i, b in enumerate([60, 60, 50, 50])
    ]  # no majority
    records += [traj("p4", i, 60, question=Q2 + " x") for i in range(3)]  # agrees with ref
    run = write_jsonl(tmp_path / "run.jsonl", records)
    report = tmp_path / "audit.md"
    result = audit(str(run), "--report", str(report))
    assert result.exit_code == 0, result.stderr
    suspects = read_jsonl(result.stdout)
    assert [(s["id"], s["check"]) for s in suspects] == [("p1", "majority_disagrees")]
    assert suspects[0]["evidence"] == {
        "majority": 50.0,
        "agree": 3,
        "samples": 4,
        "ran_ok": 3,
        "votes": {"50.0": 3, "60.0": 1},
        "protocol": "strict",
    }
    assert suspects[0]["where"] == f"{run}:1"
    text = report.read_text()
    assert "| majority_disagrees | 1 |" in text
    assert "| p1 | b | 60 | 3/4 samples answer 50.0 (code ran ok) |" in text
    assert result.stderr == (
        "or-score audit: 4 problems, 1 suspects (majority_disagrees 1, version_conflict 0,"
        " duplicate_question 0)\n"
    )


def test_version_conflicts_and_duplicate_questions(tmp_path):
    problems = write_jsonl(
        tmp_path / "bench.jsonl",
        [
            {"id": "a-1", "benchmark": "a", "question": Q1, "answer": 60},
            {"id": "a-2", "benchmark": "a", "question": Q2, "answer": 10},
            {"id": "c-9", "benchmark": "c", "question": Q2.upper(), "answer": 12},  # same text
        ],
    )
    alt = tmp_path / "alt"
    alt.mkdir()
    write_jsonl(alt / "v2.jsonl", [{"id": "v-1", "question": "  " + Q1.lower(), "answer": 66.0}])
    write_jsonl(alt / "v3.jsonl", [{"id": "w-1", "question": Q1, "answer": "60.0"}])
    result = audit(str(problems), "--versions", str(alt))
    assert result.exit_code == 0, result.stderr
    got = {(s["id"], s["check"]): s["evidence"] for s in read_jsonl(result.stdout)}
    assert got == {
        ("a-1", "version_conflict"): {
            "versions": [
                {"file": "v2.jsonl", "id": "v-1", "answer": 66.0, "differs": True},
                {"file": "v3.jsonl", "id": "w-1", "answer": "60.0", "differs": False},
            ]
        },
        ("a-2", "duplicate_question"): {
            "same_question": [{"id": "c-9", "benchmark": "c", "answer": 12}]
        },
        ("c-9", "duplicate_question"): {
            "same_question": [{"id": "a-2", "benchmark": "a", "answer": 10}]
        },
    }


def test_an_empty_or_keyless_versions_file_is_a_usage_error(tmp_path):
    problems = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "question": Q1, "answer": 1}])
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    keyless = write_jsonl(tmp_path / "k.jsonl", [{"id": "v", "prompt": Q1, "answer": 1}])
    for versions, message in (
        (empty, f"--versions {empty} holds no record"),
        (keyless, f"--versions {keyless}:1: no problem text"),
    ):
        result = audit(str(problems), "--versions", str(versions))
        assert result.exit_code == 2 and message in result.stderr
        assert result.stdout == ""


# (main file, its other versions in alt/, the names its meta.xref gives those versions)
VERSIONS = [
    ("nl4opt", ["sirl_nl4opt", "nl4opt_orlm_original"], ["sirl_nl4opt", "orlm_nl4opt"]),
    (
        "mamo_complex",
        ["mamo_complex_original", "sirl_mamo_complex_fixed"],
        ["mamo_complex_orig", "orlm_mamo_complex", "sirl_mamo_complex_fixed"],
    ),
    (
        "mamo_easy",
        ["mamo_easy_original", "sirl_mamo_easy_fixed"],
        ["mamo_easy_orig", "sirl_mamo_easy_fixed"],
    ),
    (
        "optmath",
        ["optmath_bench_original", "sirl_optmath_166", "sirl_optmath_193"],
        ["optmath_orig", "sirl_optmath_166", "sirl_optmath_193"],
    ),
    (
        "industryor",
        ["industryor_orlm_original", "sirl_industryor_fixedV2"],
        ["orlm_industryor", "sirl_industryor_fixedV2"],
    ),
]


@pytest.mark.parametrize("main,files,names", VERSIONS)
def test_real_version_conflicts_match_the_data_builds_exact_matches(main, files, names):
    """The data build recorded, per question, each other version's answer where the normalised
    text is identical (`meta.xref`, match exact). The audit, matching texts on its own, finds
    exactly the questions where such an answer differs by more than 1e-3 relative (the -99999
    "no answer" sentinels of ORLM's copies are no answer, as in the alt files)."""
    data = shared_data_or_skip()
    expected = set()
    for r in read_jsonl(data / f"{main}.jsonl"):
        for name, x in (r["meta"].get("xref") or {}).items():
            if name not in names or x.get("match") != "exact" or r["answer"] is None:
                continue
            try:
                other = float(x["answer"])
            except (TypeError, ValueError):
                continue
            truth = float(r["answer"])
            if other not in (-99999, -9999) and abs(other - truth) > 1e-3 * abs(truth):
                expected.add(r["id"])
    args = [str(data / f"{main}.jsonl"), "-q"]
    for f in files:
        args += ["--versions", str(SHARED_DATA / "alt" / f"{f}.jsonl")]
    result = audit(*args)
    assert result.exit_code == 0, result.stderr
    got = {s["id"] for s in read_jsonl(result.stdout) if s["check"] == "version_conflict"}
    assert got == expected and len(got) > 0


def test_real_cross_benchmark_duplicates_are_found():
    """NL4Opt questions that appear verbatim in OptiBench (the data README's 230 - 46 = 184)
    are duplicates; those whose answers differ are suspects."""
    data = shared_data_or_skip()
    result = audit(str(data / "nl4opt.jsonl"), str(data / "optibench.jsonl"), "-q")
    suspects = read_jsonl(result.stdout)
    pairs = {s["id"] for s in suspects if s["check"] == "duplicate_question"}
    kept = set(json.loads((data / "dedup_exact_crossbench.json").read_text())["nl4opt_kept"])
    nl4opt_dups = {i for i in pairs if i.startswith("nl4opt-")}
    assert nl4opt_dups and not nl4opt_dups & kept  # never one of the 46 with no copy
