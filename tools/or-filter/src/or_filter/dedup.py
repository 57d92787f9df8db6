"""Near-duplicate question detection for decontamination: word 3-gram shingles of normalised
text, compared by Jaccard similarity and by containment (a question embedded in a longer one),
through an inverted index so each lookup touches only questions that share a shingle.

Containment is judged only when the shorter of the two questions has at least `min_words`
words: a short generic question ("Minimize the total cost.") is contained in many long ones,
and is judged by its whole text (Jaccard) alone."""

from __future__ import annotations

import re
from collections import defaultdict

N = 3
#: Fewest words of the shorter question for a containment match (`--containment-min-words`).
MIN_CONTAINMENT_WORDS = 10


def normalise(text: str) -> list[str]:
    """Lowercase words and numbers; literal `\\n` sequences (as in MAMO) count as spaces."""
    text = text.replace("\\n", " ").lower()
    return re.findall(r"[a-z]+|\d+(?:\.\d+)?", text)


def shingles(text: str, n: int = N) -> frozenset[str]:
    return _shingles(normalise(text), n)


def _shingles(words: list[str], n: int = N) -> frozenset[str]:
    if len(words) < n:
        return frozenset([" ".join(words)]) if words else frozenset()
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


class NearDupIndex:
    """Questions of a reference set; `match(q)` returns the closest one above the thresholds."""

    def __init__(
        self,
        jaccard: float = 0.5,
        containment: float = 0.8,
        min_words: int = MIN_CONTAINMENT_WORDS,
    ):
        self.jaccard = jaccard
        self.containment = containment
        self.min_words = min_words
        self.sets: list[frozenset[str]] = []
        self.words: list[int] = []
        self.ids: list[str] = []
        self.index: dict[str, list[int]] = defaultdict(list)

    def add(self, ident: str, question: str) -> None:
        words = normalise(question)
        sh = _shingles(words)
        if not sh:
            return
        k = len(self.sets)
        self.sets.append(sh)
        self.words.append(len(words))
        self.ids.append(ident)
        for s in sh:
            self.index[s].append(k)

    def match(self, question: str) -> tuple[str, float] | None:
        """(reference id, similarity) of the best near-duplicate, or None."""
        words = normalise(question)
        sh = _shingles(words)
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
            long_enough = min(len(words), self.words[k]) >= self.min_words
            contained = common / min(len(sh), len(other)) if long_enough else 0.0
            if jac >= self.jaccard or contained >= self.containment:
                score = max(jac, contained)
                if best is None or score > best[1]:
                    best = (self.ids[k], round(score, 3))
        return best

    def __len__(self) -> int:
        return len(self.sets)
