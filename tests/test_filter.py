"""or-filter: each predicate, the funnel, rejects, deterministic sampling, decontamination, and
the split recipe on the real benchmark data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, read_jsonl, run_tool, shared_data_or_skip, write_jsonl
from helpers import make_tokenizer

BOX = "</think>\\boxed{{{}}}"


def rec(pid, sample=0, bench="a", answer=10, boxed=10, flawless=None, tokens=100, question=None):
    r = {
        "id": pid,
        "sample": sample,
        "benchmark": bench,
        "question": question or f"question {pid}",
        "answer": answer,
        "flow": [{"role": "reasoner", "text": BOX.format(boxed)}],
        "gen": {"completion_tokens": tokens},
    }
    if flawless is not None:
        r["calm"] = {"flawless": flawless}
    return r


RECORDS = [
    rec("p1", 0, "a", boxed=10, flawless=True, tokens=300),
    rec("p1", 1, "a", boxed=10, flawless=False, tokens=100),
    rec("p1", 2, "a", boxed=11, flawless=True, tokens=50),
    rec("p2", 0, "b", boxed=10, flawless=True, tokens=200),
    rec("p2", 1, "b", boxed=10, flawless=True, tokens=150),
    rec("p3", 0, "b", boxed=99, flawless=True, tokens=10),
    rec("p4", 0, "b", answer=None, boxed=1),
]


def keys(out: bytes) -> list[tuple[str, int]]:
    return [(r["id"], r["sample"]) for r in read_jsonl(out)]


def filt(*args, records=RECORDS, tmp_path=None):
    data = "".join(json.dumps(r) + "\n" for r in records)
    return run_tool("or-filter", *args, input=data)


def test_correct_and_golden():
    assert keys(filt("--correct").stdout) == [("p1", 0), ("p1", 1), ("p2", 0), ("p2", 1)]
    assert keys(filt("--golden").stdout) == [("p1", 0), ("p2", 0), ("p2", 1)]


def test_correct_follows_a_current_score_and_rescores_a_stale_one():
    from or_common.scoring import score_record

    lenient = score_record(rec("s", answer=100, boxed=103), "orlm")  # 3 % off: orlm says right
    assert keys(filt("--correct", records=[lenient]).stdout) == [("s", 0)]  # its protocol wins
    stale = rec("t", boxed=10)
    stale["score"] = {"correct": False}  # no version, no checksum: not trusted, rescored
    assert keys(filt("--correct", records=[stale]).stdout) == [("t", 0)]


def test_benchmark_and_has_answer():
    assert keys(filt("--benchmark", "B").stdout) == [("p2", 0), ("p2", 1), ("p3", 0), ("p4", 0)]
    assert ("p4", 0) not in keys(filt("--has-answer").stdout)


def test_one_per_problem_keeps_the_shortest_correct(tmp_path):
    rejects = tmp_path / "rejects.jsonl"
    result = filt("--one-per-problem", "--rejects", str(rejects))
    assert keys(result.stdout) == [("p1", 1), ("p2", 1)]
    reasons = sorted((r["id"], r["sample"], r["filter"]["reason"]) for r in read_jsonl(rejects))
    assert reasons == [
        ("p1", 0, "not_shortest"),
        ("p1", 2, "not_correct"),
        ("p2", 0, "not_shortest"),
        ("p3", 0, "not_correct"),
        ("p4", 0, "not_correct"),
    ]


def test_exclude(tmp_path):
    ids = write_jsonl(tmp_path / "ids.jsonl", [{"id": "p1"}, {"id": "p3"}])
    assert keys(filt("--exclude", str(ids)).stdout) == [("p2", 0), ("p2", 1), ("p4", 0)]


def test_funnel_counts_and_rejects_with_reasons(tmp_path):
    rejects = tmp_path / "r.jsonl"
    result = filt("--benchmark", "b", "--golden", "--rejects", str(rejects))
    err = result.stderr.decode()
    assert "input            7 -> 7  (a 3->3, b 4->4)" in err
    assert "benchmark        7 -> 4  (a 3->0, b 4->4)" in err
    assert "correct          4 -> 2  (b 4->2)" in err
    assert "golden           2 -> 2  (b 2->2)" in err
    rej = read_jsonl(rejects)
    assert len(rej) + len(read_jsonl(result.stdout)) == 7  # nothing disappears
    assert {r["filter"]["reason"] for r in rej} == {"other_benchmark", "not_correct"}


def test_stats_file_holds_the_funnel_as_json(tmp_path):
    """--stats FILE: the funnel's counts as JSON (what recipes render, instead of scraping
    stderr); rendered back, they are the lines said on stderr."""
    from or_common.records import TOOL_VERSION
    from or_filter.cli import funnel_from_stats

    stats = tmp_path / "funnel.json"
    result = filt("--benchmark", "b", "--golden", "--stats", str(stats))
    assert result.returncode == 0, result.stderr
    data = json.loads(stats.read_text())
    assert data == {
        "tool": "or-filter",
        "tool_version": TOOL_VERSION,
        "stages": [
            {
                "stage": "input",
                "in": 7,
                "out": 7,
                "by_benchmark": {"a": {"in": 3, "out": 3}, "b": {"in": 4, "out": 4}},
            },
            {
                "stage": "benchmark",
                "in": 7,
                "out": 4,
                "by_benchmark": {"a": {"in": 3, "out": 0}, "b": {"in": 4, "out": 4}},
            },
            {"stage": "correct", "in": 4, "out": 2, "by_benchmark": {"b": {"in": 4, "out": 2}}},
            {"stage": "golden", "in": 2, "out": 2, "by_benchmark": {"b": {"in": 2, "out": 2}}},
        ],
    }
    lines = funnel_from_stats(data).lines()
    assert "\n".join(lines) in result.stderr.decode()
    assert not list(tmp_path.glob(".funnel.json.*"))  # written through a temporary file
    # -q silences stderr, not the stats file
    quiet = filt("--golden", "--stats", str(stats), "-q")
    assert quiet.stderr == b"" and json.loads(stats.read_text())["stages"][-1]["out"] == 3


def test_sample_is_deterministic_and_order_independent():
    records = [rec(f"q{i}", bench="ab"[i % 2]) for i in range(40)]
    a = keys(filt("--sample", "7", "--seed", "3", records=records).stdout)
    b = keys(filt("--sample", "7", "--seed", "3", records=list(reversed(records))).stdout)
    c = keys(filt("--sample", "7", "--seed", "4", records=records).stdout)
    assert len(a) == 7 and sorted(a) == sorted(b) and sorted(a) != sorted(c)
    per = read_jsonl(filt("--sample", "5", "--per-benchmark", records=records).stdout)
    assert sorted(r["benchmark"] for r in per) == ["a"] * 5 + ["b"] * 5


BASE = (
    "A factory makes chairs and tables. Each chair needs 5 units of wood and 10 hours of labor and earns 45 dollars. "
    "Each table needs 20 units of wood and 15 hours of labor and earns 80 dollars. There are 400 units of wood and "
    "450 hours of labor available. How many chairs and tables should be made to maximize profit?"
)
PAIRS = {
    "exact": (BASE, True),
    "reworded": (
        "How many chairs and tables should a factory make to maximize profit? Each chair needs 5 units of wood and "
        "10 hours of labor and earns 45 dollars, each table needs 20 units of wood and 15 hours of labor and earns "
        "80 dollars, and there are 400 units of wood and 450 hours of labor available.",
        True,
    ),
    "different numbers": (BASE.replace("400", "500").replace("45 dollars", "50 dollars"), True),
    "unrelated": (
        "A nurse schedule covers four shifts needing 7, 11, 9 and 5 nurses; each nurse works two consecutive "
        "shifts. What is the minimum number of nurses?",
        False,
    ),
    "same domain, other problem": (
        "A bakery makes bread and cakes. Bread needs 2 kg of flour and earns 3 dollars; cakes need "
        "4 kg of flour and earn 5 dollars. With 100 kg of flour, maximize profit.",
        False,
    ),
}


@pytest.mark.parametrize("name", PAIRS)
def test_decontamination_pairs(name, tmp_path):
    question, contaminated = PAIRS[name]
    ref = write_jsonl(tmp_path / "test.jsonl", [{"id": "t1", "question": BASE}])
    result = filt("--decontaminate", str(ref), records=[rec("c", question=question)])
    assert (read_jsonl(result.stdout) == []) is contaminated


def test_max_tokens_counts_prompt_and_flow(tmp_path):
    from or_common.tokens import encode_record

    tok = make_tokenizer(tmp_path / "tok")
    short, long = rec("s"), rec("l")
    long["flow"][0]["text"] = "word " * 300 + long["flow"][0]["text"]
    for r in (short, long):
        r["messages"] = [{"role": "user", "content": "Solve it."}]
    # the token layer's sequence: what or-sft trains on (prompt, segments, end of turn)
    n_short = len(encode_record(tok, short).input_ids)
    assert n_short < len(encode_record(tok, long).input_ids)
    args = ["--max-tokens", str(n_short), "--tokenizer", str(tmp_path / "tok")]
    assert keys(filt(*args, records=[short, long]).stdout) == [("s", 0)]
    args[1] = str(n_short - 1)
    assert keys(filt(*args, records=[short, long]).stdout) == []
    assert run_tool("or-filter", "--max-tokens", "5", input="").returncode == 2  # needs --tokenizer


def test_a_tokenizer_that_cannot_load_is_one_line_before_any_record(tmp_path):
    missing = run_tool(
        "or-filter", "--max-tokens", "5", "--tokenizer", str(tmp_path / "no/such/dir"), input=""
    )
    assert missing.returncode == 2
    assert missing.stderr.decode().strip().splitlines()[-1].endswith("no such folder")
    assert b"Traceback" not in missing.stderr
    offline = run_tool(
        "or-filter",
        "--max-tokens",
        "5",
        "--tokenizer",
        "someone/not-cached",
        input="",
        env={"HF_HUB_OFFLINE": "1"},
    )
    assert offline.returncode == 2 and b"cannot be reached" in offline.stderr


def test_split_recipe_is_disjoint_and_decontaminated(tmp_path):
    data = shared_data_or_skip()
    env = {
        **os.environ,
        "DATA": str(data),
        "OUT": str(tmp_path),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    subprocess.run(
        ["bash", str(ROOT / "recipes/split.sh")],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    splits = {s: read_jsonl(tmp_path / f"{s}.jsonl") for s in ("sft", "rl", "test")}
    ids = {s: {r["id"] for r in rs} for s, rs in splits.items()}
    assert (
        not (ids["sft"] & ids["rl"])
        and not (ids["sft"] & ids["test"])
        and not (ids["rl"] & ids["test"])
    )
    assert len(splits["test"]) == 30 + 100 + 100 + 80 + 100 + 100 + 18 + 12
    assert len(splits["sft"]) == 549  # the reference's SFT set size
    assert all(r["answer"] is not None for rs in splits.values() for r in rs)
    from or_filter.dedup import NearDupIndex

    index = NearDupIndex()
    for r in splits["test"]:
        index.add(r["id"], r["question"])
    leaks = [r["id"] for s in ("sft", "rl") for r in splits[s] if index.match(r["question"])]
    assert leaks == []


def test_rejects_checks_and_a_benchmark_that_matches_nothing(tmp_path):
    from click.testing import CliRunner
    from or_filter.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    before = src.read_text()
    for rejects in (str(src), str(tmp_path / "missing" / "rejects.jsonl")):
        result = CliRunner().invoke(main, [str(src), "--correct", "--rejects", rejects])
        assert result.exit_code == 2, result.stderr
        assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert src.read_text() == before
    result = CliRunner().invoke(main, [str(src), "--benchmark", "nl4opt", "--benchmark", "B", "-q"])
    assert result.exit_code == 0
    assert "no record has benchmark 'nl4opt'; the input has: a, b" in result.stderr
    assert "'B'" not in result.stderr  # names match case-insensitively


def test_each_output_is_its_own_file(tmp_path):
    """--rejects and --stats may not name -o (nor each other): the file written last would
    destroy the other. A usage error (exit 2), one line, before anything is written."""
    from click.testing import CliRunner
    from or_filter.cli import main

    src = write_jsonl(tmp_path / "in.jsonl", RECORDS)
    out = tmp_path / "out.jsonl"
    out.write_text("kept\n")
    side = str(tmp_path / "side.json")
    for extra, said in (
        (["--rejects", str(out)], f"--rejects {out} is also -o: give each its own file\n"),
        (["--stats", str(out)], f"--stats {out} is also -o: give each its own file\n"),
        (
            ["--rejects", side, "--stats", side],
            f"--stats {side} is also --rejects: give each its own file\n",
        ),
    ):
        result = CliRunner().invoke(main, [str(src), "--correct", "-o", str(out), *extra])
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == "Error: " + said
        assert out.read_text() == "kept\n" and not Path(side).exists()


def test_quiet_means_quiet_when_a_tokenizer_is_loaded(tokenizer_dir):
    """transformers' "PyTorch was not found" advisory is not printed (torch is not needed to
    count tokens); with -q stderr stays empty."""
    data = json.dumps(rec("a")) + "\n"
    env = {k: v for k, v in os.environ.items() if k != "TRANSFORMERS_NO_ADVISORY_WARNINGS"}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "or-filter"), "--max-tokens", "999"]
        + ["--tokenizer", str(tokenizer_dir), "-q"],
        input=data,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert len(read_jsonl(result.stdout)) == 1
