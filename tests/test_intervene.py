"""or-intervene: the rules detectors, answer parsing, cutting, and the CALM loop end to end,
in-process (click's CliRunner) against fake Intervener and Reasoner servers in threads: the
Reasoner on token ids with the real Qwen3 tokenizer, the Intervener through the openai SDK."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from conftest import read_jsonl
from fakeserver import FakeServer
from helpers import (
    BAKERY_QUESTION,
    CASES,
    GOOD_CODE,
    HINT,
    OK_OUT,
    QWEN,
    FakeRunner,
    bakery,
    make_intervener,
    make_model,
    reasoner_script,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from or_common.flaws import detect
from or_common.records import flow_text
from or_common.tokens import encode, load_tokenizer, render_prompt
from or_gen.session import ReasonerSession
from or_intervene.apply import Malformed, cut_and_hint, locate, parse_intervention
from or_intervene.cli import main


@pytest.fixture(autouse=True)
def fake_sandbox(monkeypatch):
    monkeypatch.setattr(ReasonerSession, "make_runner", lambda self, limits: FakeRunner())


@pytest.fixture(scope="module")
def qwen():
    return load_tokenizer(QWEN)


@pytest.mark.parametrize("name", CASES)
def test_rules_detectors(name):
    record, expected = CASES[name]
    findings = detect(record)
    assert [f.trigger for f in findings][:1] == expected[:1], [
        (f.trigger, f.evidence) for f in findings
    ]
    text = flow_text(record["flow"])
    for f in findings:
        assert text[f.position :].startswith(f.target)  # the target is where the cut will fall
        assert f.hint.startswith(("The ", "Before", "Each", "I ")) or "I " in f.hint


def test_detector_evidence_is_specific():
    f = detect(CASES["fractional counts, wrong answer"][0])[0]
    assert "bread = 12.5" in f.hint and f.hint.endswith("```python\n")
    f = detect(CASES["infeasible status, wrong answer"][0])[0]
    assert "Infeasible" in f.hint
    f = detect(CASES["fragmented"][0])[0]
    assert "NameError" in f.evidence and f.target.startswith("```python")


@pytest.mark.parametrize(
    "answer,expected",
    [
        ("<action>NO_INTERVENTION</action>", ("NO_INTERVENTION", None)),
        ("Looks fine. NO INTERVENTION needed.", ("NO_INTERVENTION", None)),
        (
            "<Action> replace_and_continue </Action><TRIGGER>Trigger 5</TRIGGER><analysis>a</analysis><target>x = 1</target><hint>I must fix.</hint>",
            ("REPLACE_AND_CONTINUE", 5),
        ),
        (
            "```xml\n<action>REPLACE_AND_CONTINUE</action>\n<trigger>7</trigger>\n<target>The answer</target>\n<hint>I box it.</hint>\n```",
            ("REPLACE_AND_CONTINUE", 7),
        ),
        (
            "Sure! <action>REPLACE-AND-CONTINUE</action><trigger>(2)</trigger><target>t</target><hint>h",
            ("REPLACE_AND_CONTINUE", 2),
        ),
    ],
)
def test_lenient_parsing(answer, expected):
    iv = parse_intervention(answer)
    assert (iv.action, iv.trigger) == expected


@pytest.mark.parametrize(
    "answer",
    [
        "I think the student is wrong.",
        "<action>DELETE</action>",
        "<action>REPLACE_AND_CONTINUE</action><trigger>9</trigger><target>t</target><hint>h</hint>",
        "<action>REPLACE_AND_CONTINUE</action><trigger>3</trigger><target> </target><hint>h</hint>",
        "<action>REPLACE_AND_CONTINUE</action><trigger>3</trigger><target>t</target>",
    ],
)
def test_malformed_answers(answer):
    with pytest.raises(Malformed):
        parse_intervention(answer)


@given(
    st.text(
        alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    ).filter(str.strip),
    st.text(
        alphabet=st.characters(blacklist_characters="<>", blacklist_categories=("Cs",)),
        min_size=1,
        max_size=80,
    ).filter(str.strip),
    st.integers(1, 7),
)
@settings(max_examples=200)
def test_tag_parsing_round_trips(target, hint, trigger):
    answer = f"<action>REPLACE_AND_CONTINUE</action><trigger>{trigger}</trigger><analysis>x</analysis><target>{target}</target><hint>{hint}</hint>"
    iv = parse_intervention(answer)
    assert (iv.trigger, iv.target, iv.hint) == (trigger, target.strip("\n"), hint.strip("\n"))


def test_locate_and_cut():
    flow = CASES["hand verification"][0]["flow"]
    text = flow_text(flow)
    at = locate(flow, "Let me verify by hand.")
    assert text[at:].startswith("Let me verify by hand.")
    assert locate(flow, "Let  me verify\nby   hand.") == at  # whitespace-insensitive
    with pytest.raises(Malformed, match="inside an output block"):
        locate(flow, "Status: Optimal")
    with pytest.raises(Malformed, match="does not occur"):
        locate(flow, "something the model never wrote")
    cut = cut_and_hint(flow, at, "The solver already gave the optimum.", 3)
    assert flow_text(cut) == text[:at] + "The solver already gave the optimum.\n"
    assert cut[-1] == {
        "role": "intervener",
        "text": "The solver already gave the optimum.\n",
        "trigger": 3,
    }
    mid = cut_and_hint(
        flow, at + 4, "I stop.", 3
    )  # a mid-line cut gets a separator newline, in the hint segment
    assert mid[-1]["text"] == "\nI stop.\n" and flow_text(mid) == text[: at + 4] + "\nI stop.\n"


# -- end to end ----------------------------------------------------------------------------------

KEPT = "Model.\n" + GOOD_CODE + OK_OUT["text"]


def initial_records(n=2, answer=145):
    flow = [
        {"role": "reasoner", "text": "Model.\n" + GOOD_CODE},
        OK_OUT,
        {"role": "reasoner", "text": "The model is done.</think>\n\n\\boxed{999}"},
    ]
    return "".join(
        json.dumps(
            {
                "id": f"p{i}",
                "sample": 0,
                "question": f"{BAKERY_QUESTION} (shop {i})",
                "answer": answer,
                "flow": flow,
                "messages": [{"role": "user", "content": f"Solve: shop {i}"}],
                "gen": {"finish": "stop", "completion_tokens": 30},
            }
        )
        + "\n"
        for i in range(n)
    )


def calm(reasoner_url, intervener_url, *extra, input: str, intervener="openai/judge"):
    """Run or-intervene in-process; returns (result, records)."""
    args = ["--intervener", intervener, "--model", "tiny", "--api-base", reasoner_url]
    if intervener_url:
        args += ["--intervener-api-base", intervener_url]
    args += ["--tokenizer", QWEN, "--retry-backoff", "0.01", *extra]
    result = CliRunner().invoke(main, args, input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result, read_jsonl(result.stdout)


def test_calm_loop_cuts_hints_resumes_and_stops_at_no_intervention(qwen):
    script, state = make_intervener("fix")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        result, out = calm(reasoner.url, judge.url, input=initial_records(2))
        sent = [r["prompt"] for r in reasoner.requests]
    assert result.exit_code == 0, result.stderr
    for rec in out:
        c = rec["calm"]
        assert c["verdict"] == "no_intervention" and c["flawless"] is True
        assert [r["trigger"] for r in c["rounds"]] == [6]
        assert (
            c["rounds"][0]["at"] == len(KEPT) and c["rounds"][0]["target"] == "The model is done."
        )
        # what the cut threw away is kept verbatim: the whole tail of the flow it replaced
        assert c["rounds"][0]["removed"] == "The model is done.</think>\n\n\\boxed{999}"
        assert [s["role"] for s in rec["flow"]] == [
            "reasoner",
            "executor",
            "intervener",
            "reasoner",
        ]
        assert rec["flow"][2] == {"role": "intervener", "text": HINT + "\n", "trigger": 6}
        assert flow_text(rec["flow"]).endswith("\\boxed{145}.")
        assert c["initial"]["correct"] is False and c["final"]["correct"] is True
        assert c["hint_tokens"] > 0 and c["final"]["finish"] == "stop"
        # the Reasoner resumed from the token layer's encoding of the prompt + kept flow + hint
        cut = rec["flow"][:3]
        assert encode(qwen, rec["messages"], cut, None).input_ids in sent
        prefix = render_prompt(qwen, rec["messages"]) + KEPT + HINT + "\n"
        assert prefix in [qwen.decode(p, skip_special_tokens=False) for p in sent]
    assert state["calls"] == 4  # two judgements per trajectory: the flaw, then "no intervention"
    assert "success before -> after: 0.0% -> 100.0%" in result.stderr
    assert "1.00 per problem" in result.stderr
    assert "golden (correct and flawless): 2 of 2" in result.stderr


def test_stats_file_holds_the_funnel_as_json(qwen, tmp_path):
    """--stats FILE: the funnel's counts as JSON (what recipes render, instead of scraping
    stderr); rendered back, they are the lines said on stderr."""
    from or_common.records import TOOL_VERSION
    from or_intervene.calm import funnel_lines

    stats = tmp_path / "funnel.json"
    script, _ = make_intervener("fix")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        result, out = calm(reasoner.url, judge.url, "--stats", str(stats), input=initial_records(2))
    assert result.exit_code == 0, result.stderr
    data = json.loads(stats.read_text())
    hint_tokens = sum(r["calm"]["hint_tokens"] for r in out)
    before = sum(r["calm"]["initial"]["completion_tokens"] for r in out)
    after = sum(r["calm"]["final"]["completion_tokens"] for r in out)
    assert hint_tokens > 0 and before > 0 and after > 0
    assert data == {
        "tool": "or-intervene",
        "tool_version": TOOL_VERSION,
        "trajectories": 2,
        "problems": 2,
        "judged": 2,
        "correct_before": 0,
        "correct_after": 2,
        "interventions": 2,
        "hint_tokens": hint_tokens,
        "completion_tokens_before": before,
        "completion_tokens_after": after,
        "verdicts": {"no_intervention": 2},
        "golden": 2,
    }
    lines = funnel_lines(data)
    assert lines[0] == "or-intervene funnel: 2 trajectories of 2 problems"
    assert "\n".join(lines) in result.stderr
    assert not list(tmp_path.glob(".funnel.json.*"))  # written through a temporary file


def test_stats_after_resume_cover_the_whole_output(qwen, tmp_path):
    """A run interrupted and resumed (-o FILE --resume) writes the same --stats, and says the
    same funnel, as one uninterrupted run: the records already in FILE are counted too."""
    lines = initial_records(4).splitlines(keepends=True)
    fixed = json.loads(lines[1])  # one already right: no hint, correct before and after
    fixed["flow"][-1] = {"role": "reasoner", "text": "Done.</think>\n\n\\boxed{145}"}
    lines[1] = json.dumps(fixed) + "\n"
    records = "".join(lines)

    def run(name, *extra):
        script, _ = make_intervener("fix")
        out, stats = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
            result, _ = calm(
                reasoner.url,
                judge.url,
                "-o",
                str(out),
                "--stats",
                str(stats),
                *extra,
                input=records,
            )
        assert result.exit_code == 0, result.stderr
        return read_jsonl(out.read_text()), json.loads(stats.read_text()), result.stderr

    whole, once, said_once = run("once")
    run("resumed", "--limit", "2")  # interrupted after two records
    resumed, stats, said = run("resumed", "--resume")
    assert "2 already done" in said and len(resumed) == len(whole) == 4
    assert stats == once
    assert once["trajectories"] == 4 and once["verdicts"] == {"no_intervention": 4}
    assert (once["correct_before"], once["correct_after"], once["interventions"]) == (1, 4, 3)
    funnel = said_once[said_once.index("or-intervene funnel:") :]
    assert said.endswith(funnel)


def test_calm_stops_after_the_limit_with_a_last_judgement(qwen):
    script, state = make_intervener("always")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        _, out = calm(reasoner.url, judge.url, "--max-interventions", "5", input=initial_records(1))
    c = out[0]["calm"]
    assert len(c["rounds"]) == 5 and c["verdict"] == "limit" and c["flawless"] is False
    assert state["calls"] == 6
    # every later round cuts right after the previous hint (its target is the Reasoner's first
    # line after it), so the five hints stay, in order, and the Reasoner's last words follow
    assert [s["role"] for s in out[0]["flow"]][2:] == ["intervener"] * 5 + ["reasoner"]


def test_target_not_found_is_reasked_then_an_error_passes_the_record_through(qwen):
    script, state = make_intervener("not_found")
    original = initial_records(1)
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        result, out = calm(reasoner.url, judge.url, "--reask", "2", input=original)
        reask_turns = judge.requests[-1]["messages"]
    assert result.exit_code == 1
    rec = out[0]
    assert rec["flow"] == json.loads(original)["flow"]
    assert rec["calm"]["error"]["type"] == "MalformedIntervention"
    assert "does not occur" in rec["calm"]["error"]["message"]
    assert state["calls"] == 3 and len(reask_turns) == 5  # prompt, answer, note, answer, note
    assert "could not be used" in reask_turns[2]["content"]


def test_malformed_answer_is_reasked(qwen):
    script, state = make_intervener("malformed_once")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        _, out = calm(reasoner.url, judge.url, input=initial_records(1))
    c = out[0]["calm"]
    assert c["flawless"] is True and len(c["rounds"]) == 1 and state["calls"] == 3


def test_judge_failures_are_retried_then_recorded(qwen):
    script, state = make_intervener("fix")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        judge.faults = ["429:0.2", "503"] + ["500"] * 10
        t = time.monotonic()
        result, out = calm(reasoner.url, judge.url, "--retries", "3", "--concurrency", "1", input=initial_records(1))  # fmt: skip
        elapsed = time.monotonic() - t
    assert result.exit_code == 1 and elapsed >= 0.2  # the server's Retry-After was honoured
    assert out[0]["calm"]["error"]["type"] == "InternalServerError"
    assert "after 4 attempts" in out[0]["calm"]["error"]["message"]


def test_ground_truth_is_given_only_when_known(qwen):
    script, state = make_intervener("fix")
    with FakeServer(reasoner_script, tokenizer=qwen) as reasoner, FakeServer(script) as judge:
        for answer in (145, None):
            calm(reasoner.url, judge.url, "--max-interventions", "0", input=initial_records(1, answer=answer))  # fmt: skip
    known, unknown = state["prompts"]
    assert "The correct optimal objective value is 145." in known
    assert "is not known" in unknown
    assert (
        "optimal objective value is"
        not in unknown.split("## Problem")[0].split("Hint principles")[1]
    )


def test_rules_intervener_end_to_end_with_fake_reasoner(qwen):
    record = CASES["units in the box"][0]
    record["messages"] = [{"role": "user", "content": "Solve."}]

    def reasoner(prompt, body):
        return "The maximum profit is \\boxed{145}."

    with FakeServer(reasoner, tokenizer=qwen) as server:
        result, out = calm(server.url, None, input=json.dumps(record) + "\n", intervener="rules")
    rec = out[0]
    assert [r["trigger"] for r in rec["calm"]["rounds"]] == [7] and rec["calm"]["flawless"] is True
    assert flow_text(rec["flow"]).endswith(
        "inside \\boxed{}, without units or words.\nThe maximum profit is \\boxed{145}."
    )


def test_gen_then_rules_intervention_with_a_tiny_transformers_model(tmp_path, tokenizer_dir):
    pytest.importorskip("torch", reason="the transformers backend needs torch")
    from or_gen.cli import main as gen_main
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.save_pretrained(tmp_path)
    make_model(tmp_path, len(tok))
    common = ["--backend", "transformers", "--model", str(tmp_path), "--max-tokens", "16", "-q"]
    problem = json.dumps({"id": "t", "question": "Maximize 3x with x <= 4.", "answer": 12}) + "\n"
    gen = CliRunner().invoke(gen_main, [*common, "--n", "1"], input=problem)
    assert gen.exit_code == 0, gen.stderr
    args = ["--intervener", "rules", *common, "--max-interventions", "2"]
    result = CliRunner().invoke(main, args, input=gen.stdout)
    assert result.exit_code == 0, result.stderr
    rec = read_jsonl(result.stdout)[0]
    # random weights never box an answer: the rules see a protocol violation each time
    assert rec["calm"]["verdict"] in ("limit", "no_intervention") and rec["flow"]
    assert all(r["trigger"] in range(1, 8) for r in rec["calm"]["rounds"])


def test_stats_may_not_be_the_output(tmp_path):
    """--stats FILE that is also -o: a usage error (exit 2) before anything is read or written."""
    out = tmp_path / "calm.jsonl"
    out.write_text("kept\n")
    args = ["--intervener", "rules", "--model", "m", "--api-base", "http://127.0.0.1:9/v1"]
    result = CliRunner().invoke(
        main, [*args, "-o", str(out), "--stats", str(out)], input=initial_records(1)
    )
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"Error: --stats {out} is also -o: give each its own file\n"
    assert out.read_text() == "kept\n"


def test_a_hosted_intervener_without_its_key_fails_before_the_first_record():
    from click.testing import CliRunner
    from or_intervene.cli import main

    env = {"GEMINI_API_KEY": None, "INTERVENER_API_KEY": None}
    args = ["--intervener", "gemini/gemini-2.5-pro", "--model", "m", "--api-base", "http://x/v1"]
    for extra in ([], ["--intervener", "hybrid:gemini/gemini-2.5-pro"]):
        result = CliRunner(env=env).invoke(main, args + extra, input=json.dumps(bakery("x")) + "\n")
        assert result.exit_code == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "set GEMINI_API_KEY" in result.stderr
        assert result.stdout == ""
