"""The issue-20 metric: type-agnostic span recall (>= 90% of a gold span's characters covered by predicted spans)
per gold type, and character precision (predicted characters inside any gold span / predicted characters)."""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Sequence

COVER = 0.9


def _covered(a: int, b: int, pred: Sequence[tuple[int, int]]) -> int:
    mask = bytearray(b - a)
    for x, y in pred:
        lo, hi = max(a, x), min(b, y)
        if hi > lo:
            mask[lo - a: hi - a] = b"\x01" * (hi - lo)
    return sum(mask)


class CoverageScorer:
    """Accumulates recall by gold type and character precision over texts (whitespace not counted)."""

    def __init__(self, cover: float = COVER) -> None:
        self.cover = cover
        self.n: Counter = Counter()
        self.hit: Counter = Counter()
        self.pred_chars = 0
        self.pred_in_gold = 0

    def add(self, text: str, gold: Iterable[tuple[str, int, int]], pred: Iterable[tuple[int, int]]) -> None:
        gold = [(t, s, e) for t, s, e in gold if e > s]
        pred = [(s, e) for s, e in pred if e > s]
        for t, s, e in gold:
            self.n[t] += 1
            self.hit[t] += _covered(s, e, pred) >= self.cover * (e - s)
        gmask = bytearray(len(text))
        for _, s, e in gold:
            gmask[s:e] = b"\x01" * (e - s)
        pmask = bytearray(len(text))
        for s, e in pred:
            pmask[s:e] = b"\x01" * (e - s)
        for i, ch in enumerate(text):
            if pmask[i] and not ch.isspace():
                self.pred_chars += 1
                self.pred_in_gold += gmask[i]

    def result(self) -> dict[str, Any]:
        per = {t: {"recall": round(self.hit[t] / self.n[t], 4), "n": self.n[t], "missed": self.n[t] - self.hit[t]}
               for t in sorted(self.n)}
        tot_n, tot_h = sum(self.n.values()), sum(self.hit.values())
        return {"recall_by_type": per,
                "recall_all": round(tot_h / tot_n, 4) if tot_n else None,
                "char_precision": round(self.pred_in_gold / self.pred_chars, 4) if self.pred_chars else None,
                "cover": self.cover}


def score(texts: Sequence[str], golds: Sequence[Iterable[tuple[str, int, int]]],
          preds: Sequence[Iterable[tuple[int, int]]], cover: float = COVER) -> dict[str, Any]:
    sc = CoverageScorer(cover)
    for t, g, p in zip(texts, golds, preds):
        sc.add(t, g, p)
    return sc.result()
