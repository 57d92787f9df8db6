"""Scoring protocols: whether a prediction matches the reference answer.

Published numbers on these benchmarks use different tolerances, so every score names the
protocol that produced it. Each protocol is a pure function `(prediction, truth) -> (correct,
rel_error)` over parsed values (see `answers.parse_truth`).

- `strict` (default; the CALM/STORM paper): |pred - gt| / |gt| <= 1e-3, or |pred| <= 1e-3 when
  gt = 0. An infeasible (unbounded) truth is matched only by an infeasible (unbounded) answer.
- `orlm` (ORLM's published harness): both values rounded to the nearest integer first, then
  relative error <= 5 %, or |pred| <= 0.05 when gt = 0. A "no best solution" truth (our
  `infeasible` / `unbounded`) is matched only by an answer saying there is no optimum.
- `sirl` (SIRL's harness, without its re-running tricks): |pred - gt| / (|gt| + 1) <= 1e-6.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .answers import Prediction, extract_answer, parse_truth
from .records import flow_text

SCORING_VERSION = "score-v1"


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    compare: Callable[[float, float], tuple[bool, float]]
    #: Whether any "no optimum" answer matches any "no optimum" truth (orlm) or the words must agree.
    lump_special: bool = False


def _relative(pred: float, gt: float) -> float:
    return abs(pred - gt) / abs(gt) if gt != 0 else abs(pred)


def _strict(pred: float, gt: float) -> tuple[bool, float]:
    err = _relative(pred, gt)
    return err <= 1e-3, err


def _half_up(x: float) -> float:
    # Python's round() rounds halves to even; the published harness's "nearest integer" is
    # taken as half away from zero, which is what people mean by rounding a money amount.
    import math

    return math.copysign(math.floor(abs(x) + 0.5), x)


def _orlm(pred: float, gt: float) -> tuple[bool, float]:
    p, g = _half_up(pred), _half_up(gt)
    if g == 0:
        return abs(p) <= 0.05, abs(p)
    err = abs(p - g) / abs(g)
    return err <= 0.05, err


def _sirl(pred: float, gt: float) -> tuple[bool, float]:
    err = abs(pred - gt) / (abs(gt) + 1)
    return err <= 1e-6, err


PROTOCOLS: dict[str, Protocol] = {
    "strict": Protocol("strict", "relative error <= 1e-3 (absolute when the truth is 0)", _strict),
    "orlm": Protocol(
        "orlm", "ORLM: round both to integers, then relative error <= 5%", _orlm, lump_special=True
    ),
    "sirl": Protocol("sirl", "SIRL: |pred - gt| / (|gt| + 1) <= 1e-6", _sirl),
}


def compare(
    prediction: Prediction, truth: Prediction, protocol: str = "strict"
) -> tuple[bool, float | None]:
    """Return `(correct, rel_error)`; rel_error is None when either side is not a number."""
    proto = PROTOCOLS[protocol]
    if prediction is None:
        return False, None
    if isinstance(truth, str) or isinstance(prediction, str):
        if isinstance(truth, str) and isinstance(prediction, str):
            return (True if proto.lump_special else truth == prediction), None
        return False, None
    assert truth is not None
    return proto.compare(float(prediction), float(truth))


def flow_correct(record: dict, flow: list, protocol: str = "strict") -> bool | None:
    """Whether the final answer of `flow` matches the record's reference; None without one."""
    truth = parse_truth(record.get("answer"))
    if truth is None:
        return None
    return compare(extract_answer(flow_text(flow))[1], truth, protocol)[0]
