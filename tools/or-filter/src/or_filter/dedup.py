"""Near-duplicate question detection for decontamination: word 3-gram shingles of normalised
text, compared by Jaccard similarity and by containment (a question embedded in a longer one),
through an inverted index so each lookup touches only questions that share a shingle."""

from __future__ import annotations

import re
from collections import defaultdict

N = 3


def normalise(text: str) -> list[str]:
    """Lowercase words and numbers; literal `\\n` sequences (as in MAMO) count as spaces."""
    text = text.replace("\\n", " ").lower()
    return re.findall(r"[a-z]+|\d+(?:\.\d+)?", text)


def shingles(text: str, n: int = N) -> frozenset[str]:
    words = normalise(text)
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


class NearDupIndex:
    """Questions of a reference set; `match(q)` returns the closest one above the thresholds."""

    def __init__(self, jaccard: float = 0.5, containment: float = 0.8):
        self.jaccard = jaccard
        self.containment = containment
        self.sets: list[frozenset[str]] = []
        self.ids: list[str] = []
        self.index: dict[str, list[int]] = defaultdict(list)

    def add(self, ident: str, question: str) -> None:
        sh = shingles(question)
        if not sh:
            return
        k = len(self.sets)
        self.sets.append(sh)
        self.ids.append(ident)
        for s in sh:
            self.index[s].append(k)

    def match(self, question: str) -> tuple[str, float] | None:
        """(reference id, similarity) of the best near-duplicate, or None."""
        sh = shingles(question)
        if not sh:
            return None
        shared: dict[int, int] = defaultdict(int)
        for s in sh:
            for k in self.index.get(s, ()):
                shared[k] += 1
        best: tuple[str, float] | None = None
        for k, common in shared.items():
            other = self.sets[k]
            jac = common / (len(sh) + len(other) - common)
            contained = common / min(len(sh), len(other))
            if jac >= self.jaccard or contained >= self.containment:
                score = max(jac, contained)
                if best is None or score > best[1]:
                    best = (self.ids[k], round(score, 3))
        return best

    def __len__(self) -> int:
        return len(self.sets)
