"""Shortcut check: can the anonymization itself (placeholder counts and density, entity counts, source, length)
predict the label? A high out-of-fold AUC means a model could learn the redaction pattern instead of the content."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from pipeline.quality.oof import make_folds, oof_predict

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z_]*?)(?:_[0-9a-f]{6,})?>")
MAX_TYPES = 40


def shortcut_features(df: pd.DataFrame) -> pd.DataFrame:
    text = df["text"].fillna("").astype(str)
    found = text.str.findall(PLACEHOLDER_RE)
    types = pd.Series([t for lst in found for t in lst], dtype=object)
    top = sorted(types.value_counts().head(MAX_TYPES).index) if len(types) else []
    feats: dict[str, np.ndarray] = {}
    for t in top:
        feats[f"ph_{t}"] = found.map(lambda lst, t=t: sum(1 for x in lst if x == t)).to_numpy(dtype=float)
    length = text.str.len().to_numpy(dtype=float)
    ph_chars = text.map(lambda s: sum(len(m.group(0)) for m in PLACEHOLDER_RE.finditer(s))).to_numpy(dtype=float)
    feats["placeholders"] = found.map(len).to_numpy(dtype=float)
    feats["redaction_density"] = np.divide(ph_chars, length, out=np.zeros_like(length), where=length > 0)
    feats["text_length"] = length
    if "n_entities" in df.columns:
        feats["n_entities"] = pd.to_numeric(df["n_entities"], errors="coerce").fillna(0).to_numpy(dtype=float)
    out = pd.DataFrame(feats, index=df.index)
    if "source" in df.columns:
        dummies = pd.get_dummies(df["source"].astype(str), prefix="source", dtype=float)
        out = pd.concat([out, dummies[sorted(dummies.columns)]], axis=1)
    return out


def _make_model(seed: int):
    return lambda: HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, random_state=seed
    )


def shortcut_check(
    df: pd.DataFrame, y: np.ndarray, labelled: np.ndarray, groups: np.ndarray | None, k: int, seed: int,
    folds: list | None = None,
) -> dict:
    """Out-of-fold AUC of a small gradient-boosting model on anonymization features only, plus the same with the
    source indicator alone and without it (so a warning can be traced to the redaction pattern or to the source mix)."""
    feats = shortcut_features(df)
    lab_y = y
    if len(np.unique(lab_y)) < 2:
        return {"auc": None, "reason": "single class"}
    folds = folds or make_folds(lab_y, groups, k, seed)  # the label-issue folds when given (same y, groups, seed)
    X_all = feats.to_numpy(dtype=np.float64)

    def auc_for(cols: list[str]) -> float | None:
        if not cols:
            return None
        idx = [feats.columns.get_loc(c) for c in cols]
        # one OpenMP thread: on a shared 2-core box, oversubscribed OpenMP makes HGB 100x slower
        with threadpool_limits(limits=1, user_api="openmp"):
            res = oof_predict(X_all[:, idx], lab_y, labelled, folds, _make_model(seed))
        return float(roc_auc_score(lab_y, res.pred_probs[labelled][:, 1]))

    source_cols = [c for c in feats.columns if c.startswith("source_")]
    anon_cols = [c for c in feats.columns if not c.startswith("source_")]
    return {
        "auc": auc_for(list(feats.columns)),
        "auc_anonymization_only": auc_for(anon_cols),
        "auc_source_only": auc_for(source_cols) if len(source_cols) > 1 else None,
        "features": list(feats.columns),
    }
