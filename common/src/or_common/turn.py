"""The rules of one reasoning turn with code in it: one definition of what a round of
generation does.

or-gen's loop, or-intervene's resumption and or-grpo's rollout all drive a `Turn` through these
pure functions, so the rules cannot drift between evaluation and training:

1. `next_request(turn, limits)`: generate with `max_tokens` = what is left of the budget, or stop
   (`length` when the budget is spent, `rounds` after too many rounds).
2. `cut_completion(text, finish, context, ended)`: normalise what the engine returned.
   Generation pauses at the first closing fence (`STOPS`); a server that ignored the stop list
   is cut there too. A model that opens its own ```output block is stopped there and the
   opening dropped: only the sandbox writes output blocks. `context` is `model_text(flow)`, the
   model's own text so far: a fence a program printed inside an output block never counts.
3. `after_generation(turn, limits, text, finish, tokens)`: append the text; a closed ```python
   block is run (`Execute`) while executions are left, else answered with the "no longer
   available" message (`Skip`), unless the block closed with the budget's last token (then the
   turn finishes `length`: no output could be read); a fake output block is dropped at most
   `max_fake_outputs` times; an end of turn or a spent budget finishes.
4. `after_output(turn, limits, segment, tokens)`: append the executor segment (its tokens count
   against the budget but are never trained on) and go on.

The output block's exact text is `output_block(result)`, and the same place recognises one:
`is_output_block` (an executor segment's whole text), `has_output_opening` (a model text that
writes one), `output_body` (what the program printed) and `text_after_outputs` (a decoded
response's text that no program can have printed). A block closed after the execution limit
gets `SkippedResult`'s block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .blocks import awaits_execution, flow_blocks
from .flow import executions
from .reasoner import REASONER_DEFAULTS
from .records import SKIPPED

#: Generation pauses at the closing fence of a block (on its own line), and at a model-written
#: output opening. The closing fence is the full line "```\n": "```" + "\n" tokenizes
#: differently, so a stop must fall after the newline.
FENCE_STOP = "\n```\n"
FAKE_OUTPUT_STOP = "```output"
STOPS = (FENCE_STOP, FAKE_OUTPUT_STOP)
#: Every output block starts with its opening line and ends with its closing fence line.
OUTPUT_OPEN = FAKE_OUTPUT_STOP + "\n"
OUTPUT_CLOSE = FENCE_STOP

SKIPPED_MESSAGE = (
    "Code execution is no longer available: the limit of {n} executions is reached. "
    "Continue without running code."
)


@dataclass(frozen=True)
class TurnLimits:
    """The limits of one assistant turn (reference defaults)."""

    max_tokens: int = (
        REASONER_DEFAULTS.max_tokens
    )  # everything after the prompt: model and output tokens
    max_executions: int = REASONER_DEFAULTS.max_executions
    max_fake_outputs: int = 2  # a model-written output opening is dropped this often, then stop
    max_rounds: int | None = None  # default: 4 * max_executions + 32

    @property
    def round_limit(self) -> int:
        """A model that only ever writes fences still ends."""
        return self.max_rounds if self.max_rounds is not None else 4 * self.max_executions + 32


@dataclass
class Turn:
    """The state of one assistant turn. `flow` may start non-empty (a resumed trajectory)."""

    flow: list[dict[str, Any]] = field(default_factory=list)
    used_tokens: int = 0
    executions: int = 0
    fake_outputs: int = 0
    rounds: int = 0
    finish: str | None = None


@dataclass(frozen=True)
class Generate:
    max_tokens: int


@dataclass(frozen=True)
class Execute:
    code: str


@dataclass(frozen=True)
class Skip:
    message: str


@dataclass(frozen=True)
class Finish:
    reason: str  # stop | length | rounds | fake_output


Action = Generate | Execute | Skip | Finish


def append_text(flow: list[dict[str, Any]], text: str, role: str = "reasoner") -> None:
    """Extend the last segment if it is the reasoner's too, else start a new segment."""
    if not text:
        return
    if flow and flow[-1].get("role") == role == "reasoner":
        flow[-1]["text"] += text
    else:
        flow.append({"role": role, "text": text})


def model_text(flow: Sequence[dict[str, Any]]) -> str:
    """The model's own text of a flow (reasoner and intervener segments, executor output left
    out): what the fence-parity rule reads, since a program may print any fence it likes."""
    return "".join(seg.get("text", "") for seg in flow if seg.get("role") != "executor")


def ends_inside_fence(text: str) -> bool:
    """True if `text` ends inside a fenced block (an odd number of line-leading fences): read
    on `model_text`, the model's own text, never on program output."""
    return sum(1 for line in text.split("\n") if line.lstrip().startswith("```")) % 2 == 1


def cut_completion(
    text: str, finish: str, context: str = "", ended: bool = False
) -> tuple[str, str]:
    """Normalise a raw engine result to (text, finish), finish ∈ fence | fake_output | stop |
    length. `context` is the model's own text before this completion (`model_text`: executor
    output never counts) to tell an open fence; `ended` says the engine stopped on the
    end-of-turn token (then the turn is over and no fence is ever added).

    The first stop in the text wins: a server that ignored `stop` and returned code, a fake
    output and an answer in one go is cut right after the code's closing fence, so the code
    runs and the made-up output is never kept."""
    fence = text.find(FENCE_STOP)
    fake = text.find(FAKE_OUTPUT_STOP)
    if fence >= 0 and (fake < 0 or fence < fake):
        return text[: fence + len(FENCE_STOP)], "fence"
    if fake >= 0:
        return text[:fake], "fake_output"
    if finish == "stop" and not ended and ends_inside_fence(context + text):
        # a server that honoured the stop but did not include it in the text: put it back
        return text + FENCE_STOP, "fence"
    return text, "length" if finish == "length" else "stop"


def next_request(turn: Turn, limits: TurnLimits) -> Generate | Finish:
    """Before a round: generate with what is left of the budget, or finish."""
    remaining = limits.max_tokens - turn.used_tokens
    if remaining <= 0:
        return _finish(turn, "length")
    if turn.rounds >= limits.round_limit:
        return _finish(turn, "rounds")
    return Generate(remaining)


def _finish(turn: Turn, reason: str) -> Finish:
    turn.finish = reason
    return Finish(reason)


def after_generation(turn: Turn, limits: TurnLimits, text: str, finish: str, tokens: int) -> Action:
    """Take one (already cut) completion of `tokens` tokens and say what comes next."""
    turn.rounds += 1
    turn.used_tokens += tokens
    append_text(turn.flow, text)
    if finish == "fence":
        if turn.used_tokens >= limits.max_tokens:
            # the block closed with the budget's last token: the model could never read its
            # output, so it is not run and nothing is appended past the budget
            return _finish(turn, "length")
        if awaits_execution(turn.flow):
            if turn.executions < limits.max_executions:
                return Execute(flow_blocks(turn.flow)[-1].code)
            return Skip(SKIPPED_MESSAGE.format(n=limits.max_executions))
        return next_request(turn, limits)  # a non-python block closed: keep generating
    if finish == "fake_output":
        turn.fake_outputs += 1
        if turn.fake_outputs > limits.max_fake_outputs:
            return _finish(turn, "fake_output")
        return next_request(turn, limits)
    return _finish(turn, finish)


def after_output(turn: Turn, limits: TurnLimits, segment: dict[str, Any], tokens: int) -> Action:
    """Append an executor segment (from `output_segment`) of `tokens` tokens and go on."""
    if segment.get("status") != SKIPPED:
        turn.executions += 1
    turn.flow.append(segment)
    turn.used_tokens += tokens
    return next_request(turn, limits)


def _line_end(body: str) -> str:
    return "" if not body or body.endswith("\n") else "\n"


def output_block(result: Any) -> str:
    """The fenced ```output block the Reasoner sees for an execution result (an object with
    status, stdout, stderr, seconds and message, such as or-exec's ExecResult)."""
    body = result.stdout or ""
    stderr = result.stderr or ""
    if result.status != "ok" and stderr:
        body = body + _line_end(body) + stderr
    elif result.status == "ok" and stderr.strip() and not body.strip():
        body = stderr
    if result.status == "timeout":
        body += _line_end(body) + f"TimeoutError: execution stopped after {result.seconds:.1f} s"
    elif result.status == "memory":
        body += _line_end(body) + "MemoryError: the memory limit was exceeded"
    elif result.status == "killed" and result.message:
        body += _line_end(body) + f"Killed: {result.message}"
    elif result.status == SKIPPED:
        body = (
            result.message
            or "Execution is no longer available: the limit on code executions was reached."
        )
    if not body.strip():
        body = "(no output)"
    return OUTPUT_OPEN + body.rstrip("\n") + OUTPUT_CLOSE


@dataclass(frozen=True)
class SkippedResult:
    """The result of a block closed after the execution limit was reached (the turn's
    `Skip`): nothing ran, and `output_block` shows the message."""

    message: str
    status: str = SKIPPED
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


def is_output_block(text: str) -> bool:
    """Whether `text` has the shape of an `output_block`: its opening line, its closing fence
    line (what every executor segment a turn appends is)."""
    return text.startswith(OUTPUT_OPEN) and text.endswith(OUTPUT_CLOSE)


def has_output_opening(text: str) -> bool:
    """Whether `text` opens an output block anywhere: in model text, a made-up one (only the
    sandbox writes them; the turn rules stop a model that opens one)."""
    return FAKE_OUTPUT_STOP in text


#: The opening line and the closing fence of an output block, as a harness's execution log
#: converted into an executor segment may write them (the closing fence with any whitespace)
_OUTPUT_FENCES = re.compile(r"^```output\n|\n?```\s*$")


def output_body(block: str) -> str:
    """What the program printed, from an executor segment's text: the output block's opening
    line and closing fence removed (either may be missing)."""
    return _OUTPUT_FENCES.sub("", block)


#: A line that is only a fence: every output block ends with one.
_FENCE_LINE = re.compile(r"^[ \t]*```[ \t]*$", re.MULTILINE)


def text_after_outputs(text: str) -> str | None:
    """The part of a decoded response (model text and output blocks run together) that no
    program can have printed: None when it opens no output block (all of it is the model's);
    else what follows its last fence-only line (every output block ends with one, whatever a
    program printed lies before it), empty when there is none."""
    if not has_output_opening(text):
        return None
    ends = [m.end() for m in _FENCE_LINE.finditer(text)]
    return text[ends[-1] :] if ends else ""


def output_segment(result: Any) -> dict[str, Any]:
    """The executor segment for one result: what the Reasoner sees, plus status and time."""
    return {
        "role": "executor",
        "text": output_block(result),
        "status": result.status,
        "seconds": round(result.seconds or 0.0, 4),
    }


def resumed_turn(flow: Sequence[dict[str, Any]], used_tokens: int) -> Turn:
    """A Turn that continues an existing flow (or-intervene resumes after a hint): executions
    already made count against the limit."""
    return Turn(
        flow=[dict(seg) for seg in flow], used_tokens=used_tokens, executions=executions(flow)
    )


__all__ = [
    "FAKE_OUTPUT_STOP",
    "FENCE_STOP",
    "OUTPUT_CLOSE",
    "OUTPUT_OPEN",
    "SKIPPED_MESSAGE",
    "STOPS",
    "Action",
    "Execute",
    "Finish",
    "Generate",
    "TurnLimits",
    "Skip",
    "SkippedResult",
    "Turn",
    "after_generation",
    "after_output",
    "append_text",
    "cut_completion",
    "ends_inside_fence",
    "has_output_opening",
    "is_output_block",
    "model_text",
    "next_request",
    "output_block",
    "output_body",
    "output_segment",
    "resumed_turn",
    "text_after_outputs",
]
