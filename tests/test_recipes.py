"""The pipeline recipes end to end against fake Reasoner and Intervener servers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, read_jsonl
from fakeserver import FakeServer
from helpers import make_intervener, problems, reasoner_script, script

ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def test_eval_recipe(tmp_path, tokenizer_dir):
    test = tmp_path / "test.jsonl"
    test.write_text(problems("good", "good", "coder"))
    with FakeServer(script) as server:
        env = {
            **ENV,
            "MODEL": "tiny",
            "API_BASE": server.url,
            "TEST": str(test),
            "OUT": str(tmp_path / "eval"),
            "N": "2",
        }
        command = ["bash", str(ROOT / "recipes/eval.sh"), "--tokenizer", str(tokenizer_dir)]
        command += ["--max-tokens", "300", "-q"]
        result = subprocess.run(
            command,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| run | fake | macro |" in result.stdout
    # the two good problems right, the endless coder not
    assert "| tiny | 66.7 | 66.7 |" in result.stdout
    assert (tmp_path / "eval/report.md").read_text() == result.stdout
    assert (tmp_path / "eval/report.png").exists()
    assert len(read_jsonl(tmp_path / "eval/scored.jsonl")) == 6
    stamp = json.loads((tmp_path / "eval/stamp.json").read_text())
    assert stamp["model"] == "tiny" and stamp["n"] == "2" and stamp["protocol"] == "strict"
    # the same OUT with other settings: refused, never the old samples under a new stamp
    again = subprocess.run(
        command,
        env={**env, "N": "3"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert (
        again.returncode != 0 and "holds finished stages of another run (n: 2 -> 3)" in again.stderr
    )
    assert json.loads((tmp_path / "eval/stamp.json").read_text()) == stamp


def test_calm_recipe(tmp_path, tokenizer_dir):
    sft = tmp_path / "sft.jsonl"
    sft.write_text(problems("good", "good"))
    judge_script, state = make_intervener("fix")
    with FakeServer(reasoner_script) as reasoner, FakeServer(judge_script) as judge:
        env = {
            **ENV,
            "MODEL": "tiny",
            "API_BASE": reasoner.url,
            "INTERVENER": "openai/judge",
            "INTERVENER_API_BASE": judge.url,
            "SFT": str(sft),
            "OUT": str(tmp_path / "calm"),
            "N": "2",
            "TOKENIZER": str(tokenizer_dir),
            "MAX_TOKENS": "2000",
        }
        result = subprocess.run(
            [
                "bash",
                str(ROOT / "recipes/calm.sh"),
                "--tokenizer",
                str(tokenizer_dir),
                "--retry-backoff",
                "0.01",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    golden = read_jsonl(tmp_path / "calm/03-golden.jsonl")
    assert sorted(r["id"] for r in golden) == ["q0", "q1"]  # one per problem
    assert all(
        r["calm"]["flawless"] and r["flow"][-1]["text"].endswith("\\boxed{145}.") for r in golden
    )
    assert (
        len(read_jsonl(tmp_path / "calm/03-rejects.jsonl")) == 2
    )  # the second sample of each problem
    assert "success before -> after: 0.0% -> 100.0%" in result.stderr
    assert "Unclosed" not in result.stderr  # the judge's HTTP sessions are closed at the end
    # the funnels as --stats files (recipes/funnel.sh renders them): the lines said on stderr
    stats = [tmp_path / "calm/02-funnel.json", tmp_path / "calm/03-funnel.json"]
    assert json.loads(stats[0].read_text())["golden"] == 4
    assert json.loads(stats[1].read_text())["stages"][-1] == {
        "stage": "one-per-problem",
        "in": 4,
        "out": 2,
        "by_benchmark": {"fake": {"in": 4, "out": 2}},
    }
    rendered = subprocess.run(
        [sys.executable, str(ROOT / "recipes/render_funnel.py"), *map(str, stats)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert rendered.startswith("# CALM funnel\n\n```\nor-intervene funnel:")
    for line in rendered.splitlines()[3:-1]:
        assert line in result.stderr
    # the demo's report renders the same files (recipes/demo.sh names them 04- and 05-)
    demo = tmp_path / "demo"
    demo.mkdir()
    for src, dst in (
        ("02-calm.jsonl", "04-calm.jsonl"),
        ("03-golden.jsonl", "05-golden.jsonl"),
        ("02-funnel.json", "04-funnel.json"),
        ("03-funnel.json", "05-funnel.json"),
    ):
        (demo / dst).write_bytes((tmp_path / "calm" / src).read_bytes())
    spec = importlib.util.spec_from_file_location("demo_report", ROOT / "recipes/demo/report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    checks = report.Checks()
    section = report.calm_section(demo, checks)
    assert checks.failed == []
    funnels = rendered.split("```\n")[1]  # both tools' lines, as said on stderr
    i, f = funnels.index("or-intervene funnel:"), funnels.index("or-filter funnel")
    assert f"or-intervene's funnel:\n\n````\n{funnels[i:f]}````\n" in section
    assert f"or-filter's funnel:\n\n````\n{funnels[f:]}````\n" in section


def test_eval_recipe_fails_when_generation_wrote_nothing(tmp_path, tokenizer_dir):
    test = tmp_path / "test.jsonl"
    test.write_text("")
    with FakeServer(script) as server:
        env = {**ENV, "MODEL": "tiny", "API_BASE": server.url, "TEST": str(test)}
        result = subprocess.run(
            ["bash", str(ROOT / "recipes/eval.sh"), "--tokenizer", str(tokenizer_dir), "-q"],
            env={**env, "OUT": str(tmp_path / "eval")},
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode != 0
    assert "generation wrote no trajectory" in result.stderr


def test_calm_recipe_limits_only_the_problems(tmp_path, tokenizer_dir):
    """--limit 1 means one problem for or-gen; or-intervene then takes both of its samples."""
    sft = tmp_path / "sft.jsonl"
    sft.write_text(problems("good", "good"))
    judge_script, _ = make_intervener("fix")
    with FakeServer(reasoner_script) as reasoner, FakeServer(judge_script) as judge:
        env = {
            **ENV,
            "MODEL": "tiny",
            "API_BASE": reasoner.url,
            "INTERVENER": "openai/judge",
            "INTERVENER_API_BASE": judge.url,
            "SFT": str(sft),
            "OUT": str(tmp_path / "calm"),
            "N": "2",
            "TOKENIZER": str(tokenizer_dir),
        }
        result = subprocess.run(
            ["bash", str(ROOT / "recipes/calm.sh"), "--tokenizer", str(tokenizer_dir)]
            + ["--retry-backoff", "0.01", "--limit", "1", "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [r["id"] for r in read_jsonl(tmp_path / "calm/01-gen.jsonl")] == ["q0", "q0"]
    assert [r["id"] for r in read_jsonl(tmp_path / "calm/02-calm.jsonl")] == ["q0", "q0"]


def test_uv_run_does_not_recompile_bytecode_every_time():
    """uv applies a `compile-bytecode` setting to the sync inside every `uv run` (13,500 files,
    1-2 s per command): the workspace must not set it; `just bytecode` compiles once instead."""
    import shutil
    import tomllib

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]
    assert "compile-bytecode" not in settings
    uv = shutil.which("uv")
    if uv is None:
        return
    env = {k: v for k, v in ENV.items() if k != "UV_COMPILE_BYTECODE"}
    for _ in range(2):
        result = subprocess.run(
            [uv, "run", "--frozen", "true"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0 and "Bytecode compiled" not in result.stderr


def test_just_list_shows_a_whole_sentence_for_every_recipe():
    just = Path(sys.executable).parent / "just"
    listing = subprocess.run(
        [str(just), "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    recipes = [line.strip() for line in listing.splitlines()[1:] if line.strip()]
    assert len(recipes) >= 8
    for line in recipes:
        name, _, doc = line.partition("# ")
        assert doc[:1].isupper() and doc.rstrip().endswith((".", ")")), line
