"""The scoring rules (or_common.scoring) as or-score, or-filter, or-score report and
or-intervene's funnel apply them: protocols, reasons, maj@k, and scores that must not lie."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import read_jsonl
from helpers import trajectory
from or_common.scoring import SCORING_VERSION, compare
from or_score.cli import main as score_main

PROTOCOL_CASES = [
    # (prediction, truth, strict, orlm, sirl)
    (1160.0, 1160.0, True, True, True),
    (1161.0, 1160.0, True, True, False),  # 8.6e-4 relative
    (1162.0, 1160.0, False, True, False),
    (1210.0, 1160.0, False, True, False),  # 4.3 % off
    (1230.0, 1160.0, False, False, False),  # 6 % off
    (0.0005, 0.0, True, True, False),  # sirl: 5e-4 / (0 + 1) > 1e-6
    (0.002, 0.0, False, True, False),
    (0.4, 0.0, False, True, False),  # orlm rounds 0.4 -> 0
    (0.6, 0.0, False, False, False),  # ... and 0.6 -> 1
    (3.1, 3.0999999999999996, True, True, True),
    (2.6, 3.0, False, True, False),  # orlm: rounds to 3 == 3
    (2.4, 3.0, False, False, False),  # orlm: 2 vs 3
    (2.5, 3.0, False, False, False),  # orlm: Python's round(2.5) is 2 (half to even), not 3
    (3.5, 4.0, False, True, False),  # ... and round(3.5) is 4
    (-2.5, -3.0, False, False, False),  # ... and round(-2.5) is -2
    (100.0000001, 100.0, True, True, True),
    (100.001, 100.0, True, True, False),
    (-50.0, 50.0, False, False, False),
    ("infeasible", "infeasible", True, True, True),
    ("unbounded", "infeasible", False, True, False),  # orlm lumps every "no optimum" answer
    (0.0, "infeasible", False, False, False),
    ("infeasible", 0.0, False, False, False),
    (None, 5.0, False, False, False),
]


@pytest.mark.parametrize("pred,truth,strict,orlm,sirl", PROTOCOL_CASES)
def test_protocols(pred, truth, strict, orlm, sirl):
    assert compare(pred, truth, "strict")[0] is strict
    assert compare(pred, truth, "orlm")[0] is orlm
    assert compare(pred, truth, "sirl")[0] is sirl


@pytest.mark.parametrize(
    "record,reason,correct",
    [
        (trajectory("</think>\\boxed{1160}"), "correct", True),
        (trajectory("</think>\\boxed{1000}"), "wrong", False),
        (trajectory("</think>no box"), "no_answer", False),
        (trajectory("still thinking", gen={"finish": "length"}), "truncated", False),
        # a box a program printed after </think> is not the model's answer
        (
            {
                "id": "p",
                "sample": 0,
                "answer": 1160,
                "flow": [
                    {"role": "reasoner", "text": "ok</think>\n```python\nprint(1)\n```\n"},
                    {"role": "executor", "text": "```output\n\\boxed{1160}\n```\n"},
                    {"role": "reasoner", "text": "done"},
                ],
            },
            "no_answer",
            False,
        ),
        # the template opened <think>: ending the turn without closing it is unfinished thinking
        (
            trajectory("so \\boxed{1160}", gen={"finish": "stop", "prompt_opens_think": True}),
            "truncated",
            False,
        ),
        (
            trajectory(
                "ok</think>\\boxed{1160}", gen={"finish": "stop", "prompt_opens_think": True}
            ),
            "correct",
            True,
        ),
        (
            trajectory(
                "still thinking", gen={"finish": "stop"}, calm={"final": {"finish": "length"}}
            ),
            "truncated",
            False,
        ),
        (
            trajectory(
                "x", gen={"error": {"tool": "or-gen", "type": "APIError", "message": "500"}}
            ),
            "gen_error",
            False,
        ),
        (
            trajectory(
                "x", exec={"error": {"tool": "or-exec", "type": "PoolDied", "message": "gone"}}
            ),
            "exec_error",
            False,
        ),
        (
            {
                "id": "p",
                "answer": 3,
                "flow": [
                    {"role": "reasoner", "text": "```python\nx\n```\n"},
                    {"role": "executor", "text": "```output\nboom\n```\n", "status": "timeout"},
                ],
            },
            "exec_error",
            False,
        ),
        (trajectory("</think>\\boxed{5}", answer=None), "no_reference", None),
        (trajectory("</think>\\boxed{700}", answer="700.0"), "correct", True),
        # a turn cut by the budget has no final answer, whatever box it holds
        (
            trajectory("maybe \\boxed{1160}? keep thinking", gen={"finish": "length"}),
            "truncated",
            False,
        ),
        (
            trajectory("</think>\\boxed{1160} and more", gen={"finish": "length"}),
            "truncated",
            False,
        ),
        (
            trajectory(
                "</think>\\boxed{1160}",
                gen={"finish": "stop"},
                calm={"final": {"finish": "length"}},
            ),
            "truncated",
            False,
        ),
        (trajectory("</think>\\boxed{1160}", gen={"finish": "rounds"}), "truncated", False),
        # unfinished thinking: a <think> opened in the text and never closed
        (trajectory("<think>maybe \\boxed{1160}", gen={"finish": "stop"}), "truncated", False),
        (trajectory("<think>a</think>\\boxed{1}<think>\\boxed{1160}"), "truncated", False),
        # ended on its own with no think tags at all: the whole text is the answer
        (trajectory("so \\boxed{1160}", gen={"finish": "stop"}), "correct", True),
        # errors other tools recorded do not change the verdict
        (
            trajectory(
                "</think>\\boxed{1160}",
                calm={"error": {"tool": "or-intervene", "type": "APIError", "message": "401"}},
            ),
            "correct",
            True,
        ),
        (
            trajectory(
                "</think>\\boxed{1000}",
                flaws={"error": {"tool": "or-annotate", "type": "X", "message": ""}},
            ),
            "wrong",
            False,
        ),
        (
            trajectory(
                "</think>\\boxed{1160}", error={"tool": "other", "type": "X", "message": ""}
            ),
            "correct",
            True,
        ),
        ({"id": "p", "answer": 4, "response": "</think>\\boxed{4}"}, "correct", True),
    ],
)
def test_record_reasons(record, reason, correct):
    result = CliRunner().invoke(score_main, ["-q"], input=json.dumps(record) + "\n")
    assert result.exit_code == 0, result.stderr
    score = read_jsonl(result.stdout)[0]["score"]
    assert (score["reason"], score["correct"], score["protocol"]) == (reason, correct, "strict")
    assert score["version"] == SCORING_VERSION == "score-v2"
    if reason == "truncated":
        assert score["prediction"] is None and score["boxed"] is None


def _voter(i: int, prediction: int, answer: int = 5) -> dict:
    return {
        "id": "p",
        "sample": i,
        "benchmark": "b",
        "answer": answer,
        "flow": [{"role": "reasoner", "text": f"</think>\\boxed{{{prediction}}}"}],
    }


def test_maj_at_k_votes_over_the_first_k_samples_only(tmp_path):
    """[1,1,1,2,5,5,5,5] with answer 5: the first four samples vote 1, so maj@4 is 0 (a vote
    over all eight would say 5, i.e. 1.0), whatever order the records come in."""
    records = [_voter(i, p) for i, p in enumerate([1, 1, 1, 2, 5, 5, 5, 5])]
    run = tmp_path / "run.jsonl"
    run.write_text("".join(json.dumps(r) + "\n" for r in reversed(records)))
    for k, maj in ((4, 0.0), (8, 1.0), (1, 0.0)):
        result = CliRunner().invoke(
            score_main, ["report", str(run), "-k", str(k), "--format", "json"]
        )
        assert result.exit_code == 0, result.stderr
        metrics = json.loads(result.stdout)["runs"][0]["benchmarks"]["b"]
        assert (metrics["k"], metrics["maj@k"]) == (k, maj)
        assert metrics["pass@1"] == 0.5


def _stale(text: str, claimed: bool) -> dict:
    """A record whose flow changed after or-score scored it (the score is of another flow)."""
    record = trajectory("</think>\\boxed{1}")
    from or_common.scoring import score_record

    score_record(record)
    record["score"]["correct"] = claimed
    record["flow"] = [{"role": "reasoner", "text": text}]
    return record


def test_a_stale_score_is_not_trusted_by_the_report_or_the_filter():
    from or_filter.cli import main as filter_main

    stale_wrong = _stale("</think>\\boxed{1000}", claimed=True)  # claims correct, is wrong
    stale_right = _stale("</think>\\boxed{1160}", claimed=False)  # claims wrong, is right
    old_version = trajectory("</think>\\boxed{1160}", id="old")
    old_version["score"] = {"correct": False, "protocol": "strict", "version": "score-v1"}
    data = "".join(json.dumps(r) + "\n" for r in (stale_wrong, stale_right, old_version))
    for flag in ("--correct", "--golden"):
        result = CliRunner().invoke(filter_main, [flag, "-q"], input=data)
        kept = read_jsonl(result.stdout)
        expected = [] if flag == "--golden" else [("p", "</think>\\boxed{1160}"), ("old", None)]
        got = [(r["id"], r["flow"][0]["text"] if r["id"] == "p" else None) for r in kept]
        assert got == expected, flag
    report = CliRunner().invoke(score_main, ["report", "-", "--format", "json"], input=data)
    reasons = json.loads(report.stdout)["runs"][0]["benchmarks"]["unknown"]["reasons"]
    assert reasons == {"correct": 2, "wrong": 1}


def test_a_fresh_score_is_used_as_written():
    from or_common.scoring import current_score

    record = trajectory("</think>\\boxed{1200}")
    from or_common.scoring import score_record

    score_record(record, "orlm")
    assert current_score(record) is record["score"] and record["score"]["correct"] is True
    assert current_score(record, "strict")["correct"] is False  # another protocol: rescored


class _OneHint:
    """An Intervener that asks for one hint, then finds nothing."""

    name, prompt_version = "scripted", "test"

    def __init__(self):
        self.calls = 0

    async def review(self, record, flow):
        from or_intervene.apply import Intervention

        self.calls += 1
        if self.calls == 1:
            return Intervention("REPLACE_AND_CONTINUE", 5, "", "</think>", "Check again."), 2
        return Intervention("NO_INTERVENTION"), None


class _Reasoner:
    """Stands in for or-gen's Generator: `resume` continues the cut flow with a fixed text."""

    text, finish = "</think>\\boxed{1000}", "stop"

    async def resume(self, record, flow):
        from types import SimpleNamespace

        from or_common.turn import Turn

        turn = Turn(flow=[*flow, {"role": "reasoner", "text": self.text}], finish=self.finish)
        return SimpleNamespace(turn=turn, error=None)


def test_or_intervene_drops_the_score_of_the_flow_it_replaced():
    import asyncio

    from or_common.scoring import score_record
    from or_intervene.calm import calm_record

    record = score_record(trajectory("ok</think>\\boxed{1160}", gen={"finish": "stop"}))
    assert record["score"]["correct"] is True

    async def generator():
        return _Reasoner()

    out = asyncio.run(calm_record(record, _OneHint(), generator, len))
    assert out["flow"][-1]["text"] == "</think>\\boxed{1000}"
    assert "score" not in out
    assert (out["calm"]["initial"]["correct"], out["calm"]["final"]["correct"]) == (True, False)
    # a truncated final flow is never counted a success in the funnel either
    record = trajectory("ok</think>\\boxed{1160}", gen={"finish": "stop"})

    class Cut(_Reasoner):
        text, finish = "</think>\\boxed{1160}", "length"

    async def cut_generator():
        return Cut()

    out = asyncio.run(calm_record(record, _OneHint(), cut_generator, len))
    assert out["calm"]["final"]["correct"] is False
