"""or-annotate: rules annotation shares or-intervene's detectors, the model path parses and
re-asks, the report, and agreement."""

from __future__ import annotations

import json

import pytest
from conftest import read_jsonl, run_tool, write_jsonl
from fakeserver import FakeServer
from helpers import CASES
from or_annotate.annotate import parse_triggers


def test_rules_annotation_matches_the_detectors():
    records = [dict(CASES[name][0], id=name) for name in CASES]
    out = {
        r["id"]: r["flaws"]
        for r in read_jsonl(
            run_tool("or-annotate", input="".join(json.dumps(r) + "\n" for r in records)).stdout
        )
    }
    for name, (_, expected) in CASES.items():
        assert out[name]["triggers"][:1] == expected[:1]
        assert out[name]["label"] == ("flawed" if out[name]["triggers"] else "correct")
        assert out[name]["annotator"] == "rules" and len(out[name]["triggers"]) <= 2
    assert out["fragmented"]["categories"] == ["code-utilization distrust"]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("<triggers>1;7</triggers>", [1, 7]),
        ("<TRIGGERS> 5 </TRIGGERS>", [5]),
        ("<triggers>correct</triggers>", []),
        ("sure <triggers>3; 3; 4; 6</triggers>", [3, 4]),
        ("<triggers>9</triggers>", None),
        ("no tags", None),
    ],
)
def test_parse_triggers(text, expected):
    assert parse_triggers(text) == expected


def test_model_annotator_through_litellm_with_a_reask():
    calls = []

    def script(messages, body):
        calls.append(messages)
        return "I think it is flawed." if len(calls) == 1 else "<triggers>7;5</triggers>"

    record = dict(CASES["units in the box"][0], id="x")
    with FakeServer(script) as server:
        result = run_tool(
            "or-annotate",
            "--annotator",
            "openai/judge",
            "--api-base",
            server.url,
            "--retry-backoff",
            "0.01",
            input=json.dumps(record) + "\n",
        )
    flaws = read_jsonl(result.stdout)[0]["flaws"]
    assert (
        flaws["triggers"] == [7, 5]
        and flaws["prompt_version"] == "annotator-v1"
        and len(calls) == 2
    )
    assert "The correct optimal objective value is 145." in calls[0][0]["content"]


def test_report_and_agreement(tmp_path):
    a = [
        dict(CASES[n][0], id=n, benchmark="x", flaws={"triggers": t})
        for n, t in (
            ("clean", []),
            ("fragmented", [2]),
            ("no box", [7, 5]),
            ("solved by hand", [1]),
        )
    ]
    b = [dict(r, flaws={"triggers": t}) for r, t in zip(a, ([], [2], [7], [3]), strict=True)]
    pa, pb = write_jsonl(tmp_path / "a.jsonl", a), write_jsonl(tmp_path / "b.jsonl", b)
    report = json.loads(
        run_tool(
            "or-annotate",
            "report",
            str(pa),
            str(pb),
            "--format",
            "json",
            "--plot",
            str(tmp_path / "f.png"),
        ).stdout
    )
    x = report["a"]["x"]
    assert x["trajectories"] == 4 and x["correct_share"] == 0.25
    assert x["per_category"] == {
        "code-utilization distrust": 0.5,
        "lack of OR expertise": 0.25,
        "protocol": 0.25,
    }
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    agree = json.loads(run_tool("or-annotate", "agree", str(pa), str(pb)).stdout)
    assert agree["matched"] == 4 and agree["exact_set_match"] == 0.5 and agree["same_label"] == 1.0
    assert agree["per_trigger"]["7"] == {"precision": 1.0, "recall": 1.0, "support": 1}
    assert agree["per_trigger"]["5"]["precision"] == 0.0


def test_report_without_flaws_says_so_and_does_not_crash_on_plot(tmp_path):
    from click.testing import CliRunner
    from or_annotate.cli import main

    plain = write_jsonl(tmp_path / "plain.jsonl", [{"id": "a", "sample": 0, "flow": []}])
    png = tmp_path / "flaws.png"
    result = CliRunner().invoke(main, ["report", str(plain), "--plot", str(png)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1
    assert "holds no annotated trajectory" in result.stderr
    assert "nothing to plot" in result.stderr and not png.exists()


def test_report_plot_into_a_missing_directory_is_one_line(tmp_path):
    from click.testing import CliRunner
    from or_annotate.cli import main

    run = write_jsonl(tmp_path / "run.jsonl", [{"id": "a", "flaws": {"triggers": [1]}}])
    result = CliRunner().invoke(main, ["report", str(run), "--plot", str(tmp_path / "no/x.png")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "does not exist" in result.stderr


def test_a_hosted_annotator_without_its_key_fails_at_once():
    from click.testing import CliRunner
    from or_annotate.cli import main

    result = CliRunner(env={"OPENAI_API_KEY": None, "ANNOTATOR_API_KEY": None}).invoke(
        main, ["--annotator", "openai/gpt-4o"], input='{"id": "a", "flow": []}\n'
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "set OPENAI_API_KEY (or pass --api-key)" in result.stderr
