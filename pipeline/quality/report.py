"""Reviewer queue (spreadsheet-safe) and class-balance report (table + plot)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.io import atomic_path, write_json, write_parquet

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize_cell(value):
    """Spreadsheet formula injection guard (OWASP CSV injection): prefix a quote to text cells that a spreadsheet
    would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def neutralize_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralize_cell, na_action="ignore")
    return out


REVIEW_COLUMNS = [
    "record_id", "source", "text", "given_label", "suggested_label", "label_quality_score", "pred_prob_fraud",
    "decision", "decision_reason",
]


def write_review_queue(scored: pd.DataFrame, out: Path) -> int:
    flagged = scored[scored["decision"] != "keep"]
    q = flagged[REVIEW_COLUMNS].copy()
    q = q.sort_values(["label_quality_score", "record_id"], kind="mergesort", na_position="last")
    q = neutralize_frame(q.reset_index(drop=True))
    write_parquet(out / "review_queue.parquet", q)
    with atomic_path(out / "review_queue.csv", suffix=".csv") as tmp:
        # RFC 4180 CRLF: with it the csv writer quotes every field holding a bare CR, which would otherwise end the
        # row in a spreadsheet and start a new, unneutralized cell ("x\r=HYPERLINK(...)")
        q.to_csv(tmp, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n", float_format="%.6f")
    return len(q)


def class_balance(df: pd.DataFrame, label_col: str = "label") -> dict:
    """Counts and ratios per source and overall."""

    def one(frame: pd.DataFrame) -> dict:
        lab = frame[label_col]
        fraud = int((lab == 1).sum())
        legit = int((lab == 0).sum())
        unl = int(lab.isna().sum())
        n_lab = fraud + legit
        return {
            "legit": legit,
            "fraud": fraud,
            "unlabelled": unl,
            "prevalence": fraud / n_lab if n_lab else None,
            "ratio": (min(fraud, legit) / max(fraud, legit)) if max(fraud, legit) else None,
        }

    res = {"overall": one(df), "by_source": {}}
    for src, frame in sorted(df.groupby("source", sort=True), key=lambda kv: str(kv[0])):
        res["by_source"][str(src)] = one(frame)
    return res


def write_class_balance(before: dict, after: dict, out: Path) -> None:
    rows = []
    for phase, bal in (("before", before), ("after", after)):
        for src, d in [("overall", bal["overall"]), *bal["by_source"].items()]:
            rows.append({"phase": phase, "source": src, **d})
    table = pd.DataFrame(rows)
    with atomic_path(out / "class_balance.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6f")
    write_json(out / "class_balance.json", rows)
    _plot(table, out / "plots" / "class_balance.png")


def _plot(table: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = list(dict.fromkeys(table["source"]))
    x = np.arange(len(sources))
    fig, axes = plt.subplots(1, 2, figsize=(max(6, 1.6 * len(sources) + 3), 3.6))
    for i, phase in enumerate(("before", "after")):
        t = table[table["phase"] == phase].set_index("source").reindex(sources)
        axes[0].bar(x + (i - 0.5) * 0.38, t["prevalence"].fillna(0), width=0.38, label=phase)
        axes[1].bar(x + (i - 0.5) * 0.38, t["legit"] + t["fraud"], width=0.38, label=phase)
    for ax, title in zip(axes, ("fraud prevalence", "labelled records")):
        ax.set_xticks(x, sources, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
