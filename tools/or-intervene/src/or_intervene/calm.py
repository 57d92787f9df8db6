"""The CALM loop for one trajectory, and the funnel over a run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from or_common.flow import executions
from or_common.jsonl import BadLine, read_lines, write_json
from or_common.llm import GenerationError
from or_common.records import TOOL_VERSION, check_trajectory, flow_text, set_error
from or_common.scoring import flow_correct

from .apply import cut_and_hint
from .defaults import INTERVENER_DEFAULTS


def _tokens(flow: list[dict[str, Any]], count: Callable[[str], int], roles: tuple[str, ...]) -> int:
    return sum(count(s["text"]) for s in flow if s.get("role") in roles)


async def calm_record(
    record: dict[str, Any],
    intervener: Any,
    get_generator: Callable[[], Awaitable[Any]],
    count_tokens: Callable[[str], int],
    max_interventions: int = INTERVENER_DEFAULTS.max_interventions,
) -> dict[str, Any]:
    """Intervene on one trajectory until the Intervener finds nothing or the limit is reached;
    the record's flow becomes the corrected one and `calm` says what happened."""
    check_trajectory(record)
    flow = record["flow"]
    value = record.get("gen")
    gen = value if isinstance(value, dict) else {}
    initial = {
        "correct": flow_correct(record, flow, finish=gen.get("finish")),
        # counted like the final flow below, so before -> after compares like with like
        "completion_tokens": _tokens(flow, count_tokens, ("reasoner", "intervener")),
        "executions": executions(flow),
    }
    rounds: list[dict[str, Any]] = []
    error: GenerationError | None = None
    verdict = "limit"
    finish = gen.get("finish")
    for k in range(max_interventions + 1):
        try:
            intervention, offset = await intervener.review(record, flow)
        except GenerationError as exc:
            error, verdict = exc, "error"
            break
        if intervention.action == "NO_INTERVENTION":
            verdict = "no_intervention"
            break
        if k == max_interventions:
            break  # the review after the last allowed intervention still found a flaw
        assert offset is not None
        # the exact text the cut throws away, so a viewer can show what the hint replaced
        removed = flow_text(flow)[offset:]
        generator = await get_generator()
        cut = cut_and_hint(flow, offset, intervention.hint, intervention.trigger)
        # the same turn path as or-gen: a resumed Turn over the token layer's sequence
        outcome = await generator.resume(record, cut)
        if outcome.error is not None:
            error, verdict = outcome.error, "error"  # keep the flow of the last completed round
            break
        flow, finish = outcome.turn.flow, outcome.turn.finish
        rounds.append(
            {
                "trigger": intervention.trigger,
                "analysis": intervention.analysis,
                "target": intervention.target,
                "hint": intervention.hint,
                "at": offset,
                "removed": removed,
            }
        )
    if rounds:
        # the flow was replaced: a score of the old one would lie about the new one
        record.pop("score", None)
    record["flow"] = flow
    calm: dict[str, Any] = {
        "rounds": rounds,
        "verdict": verdict,
        "flawless": verdict == "no_intervention",
        "initial": initial,
        "hint_tokens": _tokens(flow, count_tokens, ("intervener",)),
        "final": {
            "finish": finish,
            "executions": executions(flow),
            "correct": flow_correct(record, flow, finish=finish),
            "completion_tokens": _tokens(flow, count_tokens, ("reasoner", "intervener")),
        },
        "intervener": intervener.name,
        "prompt_version": intervener.prompt_version,
        "tool_version": TOOL_VERSION,
    }
    record["calm"] = calm
    if error is not None:
        set_error(record, "or-intervene", error.type, error.message)
    return record


@dataclass
class CalmFunnel:
    """Counts over a run: said on stderr at the end (`lines`), written as JSON by --stats
    (`stats`); both say the same, the lines are rendered from the stats."""

    records: int = 0
    before: int = 0
    after: int = 0
    judged: int = 0
    interventions: int = 0
    hint_tokens: int = 0
    tokens_after: int = 0
    tokens_before: int = 0
    golden: int = 0
    verdicts: Counter = field(default_factory=Counter)
    problems: set = field(default_factory=set)

    def add(self, record: dict[str, Any]) -> None:
        calm = record["calm"]
        self.records += 1
        self.problems.add(str(record["id"]))
        self.verdicts[calm["verdict"]] += 1
        self.interventions += len(calm["rounds"])
        self.hint_tokens += calm["hint_tokens"]
        self.tokens_before += calm["initial"]["completion_tokens"]
        self.tokens_after += calm["final"]["completion_tokens"]
        if calm["initial"]["correct"] is not None:
            self.judged += 1
            self.before += bool(calm["initial"]["correct"])
            self.after += bool(calm["final"]["correct"])
        if calm["final"]["correct"] and calm["flawless"]:
            self.golden += 1

    def add_output(self, path: str) -> None:
        """Count the records a resumed run keeps in its output file (those it wrote with an
        error were removed to be redone), so the funnel covers the whole output, as one
        uninterrupted run would have counted it."""
        for item in read_lines([path]):
            if isinstance(item, BadLine):
                continue
            calm = item.record.get("calm")
            if isinstance(calm, dict) and "verdict" in calm:  # what `calm_record` wrote
                self.add(item.record)

    def stats(self) -> dict[str, Any]:
        """The counts as a JSON object (`--stats FILE`)."""
        return {
            "tool": "or-intervene",
            "tool_version": TOOL_VERSION,
            "trajectories": self.records,
            "problems": len(self.problems),
            "judged": self.judged,
            "correct_before": self.before,
            "correct_after": self.after,
            "interventions": self.interventions,
            "hint_tokens": self.hint_tokens,
            "completion_tokens_before": self.tokens_before,
            "completion_tokens_after": self.tokens_after,
            "verdicts": dict(sorted(self.verdicts.items())),
            "golden": self.golden,
        }

    def write(self, path: str) -> None:
        write_json(path, self.stats())

    def lines(self) -> list[str]:
        return funnel_lines(self.stats())


def funnel_lines(stats: dict[str, Any]) -> list[str]:
    """The funnel as the lines or-intervene says on stderr, from its `--stats` JSON."""
    pct = lambda a, b: f"{100 * a / b:.1f}%" if b else "–"  # noqa: E731
    mean = lambda a, b: f"{a / b:.2f}" if b else "–"  # noqa: E731
    n, problems, judged = stats["trajectories"], stats["problems"], stats["judged"]
    before, after = stats["correct_before"], stats["correct_after"]
    hints, tokens_before = stats["interventions"], stats["completion_tokens_before"]
    tokens_after = stats["completion_tokens_after"]
    return [
        f"or-intervene funnel: {n} trajectories of {problems} problems",
        f"  success before -> after: {pct(before, judged)} -> {pct(after, judged)} ({before} -> {after} of {judged} with a known answer)",
        f"  interventions: {hints} ({mean(hints, problems)} per problem, {mean(hints, n)} per trajectory)",
        f"  hint tokens: {stats['hint_tokens']} = {pct(stats['hint_tokens'], tokens_after)} of completion tokens",
        f"  mean length before -> after: {mean(tokens_before, n)} -> {mean(tokens_after, n)} tokens",
        "  verdicts: " + ", ".join(f"{k} {v}" for k, v in stats["verdicts"].items()),
        f"  golden (correct and flawless): {stats['golden']} of {n}",
    ]
