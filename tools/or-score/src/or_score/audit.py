"""Label audit (`or-score audit`): reference answers that look wrong.

Three checks, each a suspect with its evidence (never a verdict: a person decides):

- `majority_disagrees`: more than half of a problem's samples (at least `min_agree`) give one
  answer, it differs from the reference under the protocol, and the code of each of those
  samples ran ok (its last execution ended `ok`; a sample without executions cannot show it);
- `version_conflict`: the same question (identical after normalisation) in a `--versions` file
  has an answer that differs under the protocol;
- `duplicate_question`: the same question under several ids of the inputs, with answers that
  differ under the protocol.

Normalisation for matching (as `../shared/data/README.md`): the literal two characters `\\n`
become a space, lowercase, keep `[a-z0-9.]`, collapse whitespace.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from or_common.answers import Prediction, parse_truth
from or_common.records import RecordError
from or_common.scoring import compare, current_score, response_text
from or_common.texts import problem_text, reference_texts
from or_common.usage import UsageLine

CHECKS = ("majority_disagrees", "version_conflict", "duplicate_question")


def normalise(text: str) -> str:
    text = re.sub(r"[^a-z0-9.]+", " ", text.replace("\\n", " ").lower())
    return " ".join(text.split())


def _vote(prediction: Any) -> Any:
    return float(f"{prediction:.6g}") if isinstance(prediction, float) else prediction


def _ran_ok(record: dict[str, Any]) -> bool:
    score = record.get("score")
    if isinstance(score, dict) and score.get("by") == "execution":
        return score.get("exec_status") == "ok"
    flow = record.get("flow")
    if not isinstance(flow, list):
        return False
    statuses = [
        s.get("status") for s in flow if isinstance(s, dict) and s.get("role") == "executor"
    ]
    return bool(statuses) and statuses[-1] == "ok"


@dataclass
class Problem:
    id: str
    benchmark: str
    answer: Any
    truth: Prediction
    where: str
    text: str | None = None
    samples: int = 0
    votes: Counter = field(default_factory=Counter)
    ran_ok: Counter = field(default_factory=Counter)


@dataclass
class Audit:
    protocol: str
    text_key: str | None = None
    problems: dict[str, Problem] = field(default_factory=dict)
    no_text: int = 0

    def add(self, record: dict[str, Any], where: str) -> None:
        """One problem or trajectory record (RecordError: it cannot be used)."""
        if "id" not in record:
            raise RecordError("missing field 'id'")
        if "answer" not in record:
            raise RecordError("missing field 'answer' (use null when unknown)")
        pid = str(record["id"])
        problem = self.problems.get(pid)
        if problem is None:
            problem = self.problems[pid] = Problem(
                pid,
                str(record.get("benchmark") or "unknown"),
                record["answer"],
                parse_truth(record["answer"]),
                where,
            )
        if problem.text is None:
            try:
                problem.text = problem_text(record, self.text_key)
            except RecordError:
                pass
        try:
            response_text(record)
        except RecordError:
            return  # a problem record: no sample
        problem.samples += 1
        prediction = current_score(record, self.protocol)["prediction"]
        if prediction is not None:
            problem.votes[_vote(prediction)] += 1
            if _ran_ok(record):
                problem.ran_ok[_vote(prediction)] += 1

    def finish(self) -> None:
        self.no_text = sum(1 for p in self.problems.values() if p.text is None)


def _differs(a: Prediction, b: Prediction, protocol: str) -> bool:
    """Whether two known answers disagree under the protocol (unknown answers never do)."""
    return a is not None and b is not None and not compare(a, b, protocol)[0]


def _suspect(p: Problem, check: str, evidence: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": p.id,
        "benchmark": p.benchmark,
        "check": check,
        "reference": p.answer,
        "where": p.where,
        "evidence": evidence,
        "question": (p.text or "")[:300],
    }


def majority_suspects(audit: Audit, min_agree: int) -> list[dict[str, Any]]:
    out = []
    for p in audit.problems.values():
        if not p.votes or p.truth is None:
            continue
        answer, n = p.votes.most_common(1)[0]
        if n < min_agree or n * 2 <= p.samples or p.ran_ok[answer] < n:
            continue
        if _differs(answer, p.truth, audit.protocol):
            evidence = {
                "majority": answer,
                "agree": n,
                "samples": p.samples,
                "ran_ok": p.ran_ok[answer],
                "votes": {str(k): v for k, v in p.votes.most_common()},
                "protocol": audit.protocol,
            }
            out.append(_suspect(p, "majority_disagrees", evidence))
    return out


def version_index(paths: Iterable[str], text_key: str | None) -> dict[str, list[dict[str, Any]]]:
    """Normalised question -> [{file, id, answer}] over the version files (a file or a folder
    of *.jsonl). An empty file or a record without a problem text is a usage error."""
    files: list[str] = []
    for path in paths:
        p = Path(path)
        files += sorted(str(f) for f in p.glob("*.jsonl")) if p.is_dir() else [path]
    if not files:
        raise UsageLine(f"--versions {', '.join(paths)}: no .jsonl file there")
    index: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in files:
        n = 0
        for record, text in reference_texts(path, text_key, "--versions"):
            n += 1
            entry = {"file": Path(path).name, "id": record.get("id")}
            index[normalise(text)].append({**entry, "answer": record.get("answer")})
        if not n:
            raise UsageLine(f"--versions {path} holds no record")
    return index


def version_suspects(audit: Audit, index: dict[str, list[dict[str, Any]]]) -> list[dict]:
    out = []
    for p in audit.problems.values():
        if p.text is None or p.truth is None:
            continue
        others = index.get(normalise(p.text), [])
        versions = [
            {**o, "differs": _differs(parse_truth(o["answer"]), p.truth, audit.protocol)}
            for o in others
        ]
        if any(v["differs"] for v in versions):
            out.append(_suspect(p, "version_conflict", {"versions": versions}))
    return out


def duplicate_suspects(audit: Audit) -> list[dict[str, Any]]:
    groups: dict[str, list[Problem]] = defaultdict(list)
    for p in audit.problems.values():
        if p.text is not None:
            groups[normalise(p.text)].append(p)
    out = []
    for group in groups.values():
        if len(group) < 2:
            continue
        if not any(_differs(a.truth, b.truth, audit.protocol) for a in group for b in group):
            continue
        for p in group:
            same = [
                {"id": o.id, "benchmark": o.benchmark, "answer": o.answer}
                for o in group
                if o is not p
            ]
            out.append(_suspect(p, "duplicate_question", {"same_question": same}))
    return out


def markdown(audit: Audit, suspects: list[dict[str, Any]], sources: list[str]) -> str:
    """The report a person reads: counts, then one table per check."""
    counts = Counter(s["check"] for s in suspects)
    lines = [
        "# Label audit",
        "",
        f"Inputs: {', '.join(sources)} · {len(audit.problems)} problems ·"
        f" protocol {audit.protocol}",
        "",
        "| check | suspects |",
        "|---|---|",
        *(f"| {c} | {counts[c]} |" for c in CHECKS),
        "",
    ]
    if audit.no_text:
        lines += [
            f"{audit.no_text} problems have no question text: the version and duplicate"
            " checks could not look at them.",
            "",
        ]
    for check in CHECKS:
        rows = [s for s in suspects if s["check"] == check]
        if not rows:
            continue
        lines += [
            f"## {check}",
            "",
            "| id | benchmark | reference | evidence |",
            "|---|---|---|---|",
        ]
        for s in rows:
            lines.append(f"| {s['id']} | {s['benchmark']} | {s['reference']} | {_brief(s)} |")
        lines.append("")
    return "\n".join(lines)


def _brief(s: dict[str, Any]) -> str:
    e = s["evidence"]
    if s["check"] == "majority_disagrees":
        return f"{e['agree']}/{e['samples']} samples answer {e['majority']} (code ran ok)"
    if s["check"] == "version_conflict":
        return "; ".join(
            f"{v['file']} {v['id']}: {v['answer']}" + (" (differs)" if v["differs"] else "")
            for v in e["versions"]
        )
    return "; ".join(f"{o['id']} ({o['benchmark']}): {o['answer']}" for o in e["same_question"])
