"""Final-answer extraction: the last `\\boxed{}` after the thinking, and the number in it.

Models write numbers in many ways (`1,160`, `\\$1{,}160.50`, `\\frac{3}{4}`, `1.2 \\times 10^{4}`,
`12.5\\%`, `\\text{infeasible}`). `parse_number` turns one boxed string into a float, the word
`"infeasible"` / `"unbounded"`, or None when it holds no single number.
"""

from __future__ import annotations

import math
import re
from typing import Literal

THINK_END = "</think>"
BOX_COMMANDS = ("\\boxed", "\\fbox")

Prediction = float | Literal["infeasible", "unbounded"] | None
_BRACE = re.compile(r"[{}]")
_BARE_NUMBER = re.compile(r"[-+]?[\d.,]+")


def answer_region(text: str) -> str:
    """The part of the assistant text that holds the answer: after the last `</think>` if the
    thinking was closed, else all of it (models without a think block answer in plain text)."""
    end = text.rfind(THINK_END)
    return text[end + len(THINK_END) :] if end >= 0 else text


def _escaped(text: str, i: int) -> bool:
    return i > 0 and text[i - 1] == "\\"


def _brace_pairs(text: str) -> dict[int, int]:
    """The closing `}` of every `{` that has one, braces written `\\{` / `\\}` left out: one
    pass with a stack (a scan from each opening to its close would be quadratic in a text of
    many unclosed boxes)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE.finditer(text):
        i = m.start()
        if _escaped(text, i):
            continue
        if m.group() == "{":
            stack.append(i)
        elif stack:
            pairs[stack.pop()] = i
    return pairs


def extract_boxed_all(text: str) -> list[str]:
    """Every `\\boxed{...}` (and `\\fbox{...}`) content in order of appearance."""
    found: list[tuple[int, str]] = []
    pairs: dict[int, int] | None = None
    for command in BOX_COMMANDS:
        pos = 0
        while (i := text.find(command, pos)) >= 0:
            j = i + len(command)
            while j < len(text) and text[j] == " ":
                j += 1
            if j < len(text) and text[j] == "{":
                if pairs is None:
                    pairs = _brace_pairs(text)
                close = pairs.get(j) if not _escaped(text, j) else None
                if close is not None:
                    content = text[j + 1 : close]
                    if content.strip():  # an empty \\boxed{} (e.g. quoted in a hint) is no answer
                        found.append((i, content))
                    pos = close + 1
                    continue
            elif j < len(text) and command == "\\boxed":
                # `\\boxed 42` (TeX allows a single token without braces)
                m = _BARE_NUMBER.match(text, j)
                if m:
                    found.append((i, m.group(0)))
            pos = j
    return [content for _, content in sorted(found)]


_INFEASIBLE = re.compile(
    r"\b(infeasible|no\s+feasible|not\s+feasible|no\s+(optimal|best)\s+solution|no\s+solution)\b"
)
_UNBOUNDED = re.compile(r"\b(unbounded|unbounded\s+below|unbounded\s+above|infinite)\b")
_TEXT_CMD = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]+?)\s*\}\s*\{\s*([^{}]+?)\s*\}")
_FRAC_BARE = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")  # \frac34
_POW10 = re.compile(r"\s*(?:\\times|\\cdot|×|\*|x)\s*10\s*\^\s*\{?\s*([-+−]?\d+)\s*\}?")
_NOISE = re.compile(r"\\left|\\right|\\displaystyle|\\[,;:!]|\\quad|\\qquad|~|\\\s")
_CURRENCY = re.compile(r"\\\$|\$|€|£|¥|₹|\\euro|\bUSD\b|\bEUR\b|\bRMB\b|\bCNY\b|\\yen|\\pounds")
_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,|\\,|\s|')(?=\d{3}(?:\D|$))")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_FRACTION = re.compile(r"^\(?\s*([-+]?\d+(?:\.\d+)?)\s*\)?\s*/\s*\(?\s*([-+]?\d+(?:\.\d+)?)\s*\)?$")
_UNIT_TAIL = re.compile(r"^[\sA-Za-z%./\\^{}()\-·°]*$")


def _unwrap_text(s: str) -> str:
    prev = None
    while prev != s:
        prev = s
        s = _TEXT_CMD.sub(lambda m: " " + m.group(1) + " ", s)
    return s


def parse_number(raw: str) -> Prediction:
    """Parse the content of a box into a float, a special word, or None if ambiguous."""
    s = (
        raw.strip()
        .replace("−", "-")
        .replace("–", "-")
        .replace("\u2009", " ")
        .replace("\u00a0", " ")
    )
    s = _unwrap_text(s)
    s = _NOISE.sub(" ", s)
    lowered = s.lower()
    if not re.search(r"\d", s):
        if _INFEASIBLE.search(lowered):
            return "infeasible"
        if _UNBOUNDED.search(lowered) or "\\infty" in lowered:
            return "unbounded"
        return None
    # `x = 3, y = 4, z = 1160`: the value after the last `=` (or `\approx`) is the answer.
    for sep in ("\\approx", "≈", "=", ":"):
        if sep in s:
            s = s.rsplit(sep, 1)[1]
    s = _CURRENCY.sub(" ", s)
    s = s.replace("$", " ")
    s = _FRAC.sub(lambda m: f"({m.group(1)})/({m.group(2)})", s)
    s = _FRAC_BARE.sub(lambda m: f"{m.group(1)}/{m.group(2)}", s)
    s = _POW10.sub(lambda m: "e" + m.group(1).replace("−", "-"), s)
    s = s.strip()
    s = re.sub(r"\\?%$", "", s).strip()  # a trailing percent sign is dropped, not scaled
    s = re.sub(r"\\?%(?=\s*[A-Za-z\s]*$)", "", s).strip()
    s = _THOUSANDS.sub("", s)
    s = s.replace("{", "").replace("}", "").strip()
    s = re.sub(r"^([-+])\s+(?=[\d.(])", r"\1", s)  # `-\$5` became `- 5`
    sign = 1.0
    if s.startswith("-(") or s.startswith("- ("):
        sign, s = -1.0, s.lstrip("- ")
    frac = _FRACTION.match(s)
    if frac:
        num, den = float(frac.group(1)), float(frac.group(2))
        return sign * num / den if den else None
    m = _NUMBER.match(s)
    if not m:
        # a leading word ("approximately 12", "about 3") is harmless
        m2 = re.match(r"^[A-Za-z\s]*?\s([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", " " + s)
        if not m2:
            return None
        value, rest = m2.group(1), s[m2.end() - 1 :]
    else:
        value, rest = m.group(0), s[m.end() :]
    if re.search(r"\d", rest) or not _UNIT_TAIL.match(rest):
        return None  # several numbers, or something that is not a unit, follows
    try:
        number = sign * float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def answer_in(region: str) -> tuple[str | None, Prediction]:
    """`(boxed_content, prediction)` of the last box in an answer region (see `answer_region`)."""
    boxes = extract_boxed_all(region)
    if not boxes:
        return None, None
    return boxes[-1], parse_number(boxes[-1])


_LATEX_WORD = re.compile(r"\\[A-Za-z]+")
_RELATION = re.compile(r"=|<|>|\\approx|\\le|\\ge|\\neq|≈|≤|≥")
#: A variable: a letter after a digit (`20x`, not the `e` of `1.5e3`), or a lone letter next
#: to an operator (`x + y`).
_VARIABLE = re.compile(
    r"\d\s*(?![eE][-+]?\d)[A-Za-z](?![A-Za-z])|(?<![A-Za-z\d.])[A-Za-z](?![A-Za-z])\s*[-+*/^]"
    r"|[-+*/^]\s*[A-Za-z](?![A-Za-z])"
)
_PLAIN_NUMBER = re.compile(r"\s*[-+]?\d[\d.]*\s*")
_UNIT_MARK = re.compile(r"\\\$|\$|€|£|¥|₹|%|\\euro|\\yen|\\pounds|[A-Za-z]{2,}")
_ALLOWED_WORDS = re.compile(
    r"\\(?:times|cdot|frac|dfrac|tfrac|left|right|displaystyle)(?![A-Za-z])"
    r"|\b(?:infeasible|unbounded)\b",
    re.IGNORECASE,
)


def answer_format(boxes: list[str], prediction: Prediction) -> str:
    """How the final answer is written, as the paper's trigger 7 wants it (a lone number in one
    box): `several_boxes` (more than one box after the thinking), `formula` (an equation or an
    expression in variables: `20x + 30y = 950`, `x = 3, z = 7`), `units` (a unit, currency or
    percent sign: `327.66 \\text{ dollars}`, `\\$215,000`, `12\\%`), else `ok`. Only a flag:
    the verdict is the protocol's."""
    if len(boxes) > 1:
        return "several_boxes"
    if _PLAIN_NUMBER.fullmatch(boxes[-1]):  # the common case, decided without the rules below
        return "ok"
    content = _unwrap_text(boxes[-1])
    if prediction in ("infeasible", "unbounded") and not re.search(r"\d", content):
        return "ok"
    bare = _ALLOWED_WORDS.sub(" ", content)
    if _RELATION.search(bare) or _VARIABLE.search(_LATEX_WORD.sub(" ", bare)):
        return "formula"
    if _UNIT_MARK.search(bare):
        return "units"
    return "ok"


def parse_truth(value: object) -> Prediction:
    """Normalise a reference answer: numbers, numeric strings, or infeasible/unbounded words."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text.replace(",", ""))
        except ValueError:
            pass
        lowered = text.lower()
        if _INFEASIBLE.search(lowered):
            return "infeasible"
        if _UNBOUNDED.search(lowered):
            return "unbounded"
        return parse_number(text)
    return None
