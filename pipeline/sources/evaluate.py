"""Score an ingest run against demo ground truth (`duplicates.csv`, `malformed.csv`). Evaluation only: the
stage never reads the truth to decide anything. Output holds keys and locators, never field values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Hashable, Iterable

import pandas as pd

from pipeline.io import read_parquet


class _Clusters:
    """Union-find over (source, key) nodes."""

    def __init__(self, pairs: Iterable[tuple[Hashable, Hashable]] = ()) -> None:
        self.parent: dict[Hashable, Hashable] = {}
        for a, b in pairs:
            self.union(a, b)

    def find(self, x: Hashable) -> Hashable:
        p = self.parent.setdefault(x, x)
        while p != self.parent[p]:
            self.parent[p] = self.parent[self.parent[p]]
            p = self.parent[p]
        self.parent[x] = p
        return p

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)  # type: ignore[type-var]

    def same(self, a: Hashable, b: Hashable) -> bool:
        return self.find(a) == self.find(b)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 6) if b else None


def evaluate(out: Path, truth: Path, sources: list[str], label: str | None = None) -> dict[str, Any]:
    """`label`: how metrics name the truth folder (a repository-relative path; never a machine path)."""
    out, truth = Path(out), Path(truth)
    res: dict[str, Any] = {"ground_truth": label if label is not None else truth.name}
    truth_sources: set[str] = set()
    for name in ("malformed.csv", "duplicates.csv"):
        if (truth / name).is_file():
            truth_sources |= set(pd.read_csv(truth / name, dtype=str, usecols=["source"])["source"])
    if not truth_sources & set(sources):
        res["note"] = "the ground truth names none of these sources"
        return res
    recs = read_parquet(out / "records.parquet", columns=["record_id", "source", "source_key"])
    dups = read_parquet(out / "duplicates.parquet", columns=["record_id", "source", "source_key", "dup_of", "kind"])
    qua = read_parquet(out / "quarantine.parquet", columns=["source", "locator", "reason"])

    mal_path = truth / "malformed.csv"
    if mal_path.is_file():
        m = pd.read_csv(mal_path, dtype=str, keep_default_na=False)
        m = m[m["source"].isin(sources)]
        qloc = set(zip(qua["source"], qua["locator"]))
        hit = [(s, loc) in qloc for s, loc in zip(m["source"], m["locator"])]
        m = m.assign(hit=hit)
        by_problem = {
            f"{s}/{p}": {"planted": len(g), "quarantined": int(g["hit"].sum())}
            for (s, p), g in m.groupby(["source", "problem"], sort=True)
        }
        truth_loc = set(zip(m["source"], m["locator"]))
        extra = qua[[(s, loc) not in truth_loc for s, loc in zip(qua["source"], qua["locator"])]]
        res["malformed"] = {
            "planted": len(m),
            "quarantined": int(m["hit"].sum()),
            "recall": _ratio(int(m["hit"].sum()), len(m)),
            "by_problem": by_problem,
            "missed": [
                {"source": s, "locator": loc, "problem": p}
                for s, loc, p, h in zip(m["source"], m["locator"], m["problem"], m["hit"])
                if not h
            ][:50],
            "quarantined_not_planted": {f"{s}/{r}": int(n) for (s, r), n in extra.groupby(["source", "reason"]).size().items()},
        }

    dup_path = truth / "duplicates.csv"
    if dup_path.is_file():
        t = pd.read_csv(dup_path, dtype=str, keep_default_na=False)
        t = t[t["source"].isin(sources) & t["dup_of_source"].isin(sources)]
        node = {rid: (s, k) for rid, s, k in zip(recs["record_id"], recs["source"], recs["source_key"])}
        present = set(node.values()) | set(zip(dups["source"], dups["source_key"]))
        t_pairs = [((a, b), (c, d)) for a, b, c, d in zip(t["source"], t["key"], t["dup_of_source"], t["dup_of_key"])]
        p_pairs = [((s, k), node[o]) for s, k, o in zip(dups["source"], dups["source_key"], dups["dup_of"])]
        tc, pc_ = _Clusters(t_pairs), _Clusters(p_pairs)
        p_ok = [tc.same(a, b) for a, b in p_pairs]
        evaluable = [(pair, kind) for pair, kind in zip(t_pairs, t["kind"]) if pair[0] in present and pair[1] in present]
        r_ok = [pc_.same(a, b) for (a, b), _ in evaluable]
        by_kind: dict[str, Any] = {}
        for kind in sorted(set(t["kind"])):
            sel = [ok for ok, (_, k) in zip(r_ok, evaluable) if k == kind]
            by_kind[kind] = {"truth": len(sel), "found": int(sum(sel)), "recall": _ratio(int(sum(sel)), len(sel))}
        pred_kind = dups["kind"].tolist()
        for kind in sorted(set(pred_kind)):
            sel = [ok for ok, k in zip(p_ok, pred_kind) if k == kind]
            by_kind.setdefault(kind, {})["predicted"] = len(sel)
            by_kind[kind]["precision"] = _ratio(int(sum(sel)), len(sel))
        per_source = {}
        for s in sources:
            ps = [ok for ok, (a, _) in zip(p_ok, p_pairs) if a[0] == s]
            rs = [ok for ok, ((a, _), _) in zip(r_ok, evaluable) if a[0] == s]
            if ps or rs:
                per_source[s] = {"precision": _ratio(sum(ps), len(ps)), "recall": _ratio(sum(rs), len(rs)),
                                 "predicted": len(ps), "truth": len(rs)}
        res["duplicates"] = {
            "truth": len(t_pairs),
            "evaluable": len(evaluable),
            "not_evaluable": len(t_pairs) - len(evaluable),  # a member was quarantined
            "predicted": len(p_pairs),
            "precision": _ratio(sum(p_ok), len(p_ok)),
            "recall": _ratio(sum(r_ok), len(r_ok)),
            "by_kind": by_kind,
            "by_source": per_source,
            "false_positives": [
                {"source": a[0], "key": a[1], "dup_of_source": b[0], "dup_of_key": b[1]}
                for (a, b), ok in zip(p_pairs, p_ok) if not ok
            ][:50],
            "missed": [
                {"source": a[0], "key": a[1], "dup_of_source": b[0], "dup_of_key": b[1], "kind": k}
                for ((a, b), k), ok in zip(evaluable, r_ok) if not ok
            ][:50],
        }
    return res
