"""Shortcut check: could a model learn the anonymization instead of the content?

Two out-of-fold AUCs on the same folds: a small gradient-boosting model on anonymization features only (placeholder
counts per type, placeholder total, redaction density, entity count) and the label-issue text model (its out-of-fold
probabilities, computed anyway). Plus, per placeholder type, the share of fraud and of legit records that carry it.

- `warning`: the anonymization features alone predict the label nearly as well as the text does
  (AUC_meta >= AUC_text - margin, and AUC_meta > 0.6), or one placeholder type's share differs between the classes by
  more than `rate_gap`: the redaction pattern itself separates the classes.
- `info`: the anonymization features carry signal (AUC_meta >= 0.6, or a placeholder's share differs by 0.2 or more)
  but the text carries clearly more: a true signal (scam texts do carry phone numbers), reported, not a warning.
- `ok`: otherwise.
`driver` names the placeholder type whose class shares differ most."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from pipeline.quality.oof import oof_predict

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z_]*?)(?:_[0-9a-f]{6,})?>")
MAX_TYPES = 40
INFO_AUC = 0.6  # below this the anonymization features carry no signal worth a note
INFO_GAP = 0.2  # a placeholder share difference worth a note


def shortcut_features(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(anonymization features, per-type presence 0/1) for every row."""
    text = df["text"].fillna("").astype(str)
    found = text.str.findall(PLACEHOLDER_RE)
    types = pd.Series([t for lst in found for t in lst], dtype=object)
    top = sorted(types.value_counts().head(MAX_TYPES).index) if len(types) else []
    feats: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for t in top:
        cnt = found.map(lambda lst, t=t: sum(1 for x in lst if x == t)).to_numpy(dtype=float)
        feats[f"ph_{t}"] = cnt
        present[t] = (cnt > 0).astype(float)
    length = text.str.len().to_numpy(dtype=float)
    ph_chars = text.map(lambda s: sum(len(m.group(0)) for m in PLACEHOLDER_RE.finditer(s))).to_numpy(dtype=float)
    feats["placeholders"] = found.map(len).to_numpy(dtype=float)
    feats["redaction_density"] = np.divide(ph_chars, length, out=np.zeros_like(length), where=length > 0)
    if "n_entities" in df.columns:
        feats["n_entities"] = pd.to_numeric(df["n_entities"], errors="coerce").fillna(0).to_numpy(dtype=float)
    return pd.DataFrame(feats, index=df.index), pd.DataFrame(present, index=df.index)


def _make_model(seed: int):
    return lambda: HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20, random_state=seed
    )


def shortcut_check(
    df: pd.DataFrame, y: np.ndarray, labelled: np.ndarray, folds: list, text_probs: np.ndarray | None, seed: int,
    *, margin: float = 0.05, rate_gap: float = 0.8,
) -> dict:
    """`y` and `folds` over the labelled rows; `text_probs` (labelled rows, 2 columns): the text model's out-of-fold
    probabilities on the same folds."""
    if len(np.unique(y)) < 2:
        return {"status": "not_run", "auc": None, "message": "single class"}
    feats, present = shortcut_features(df)
    lab_feats = feats[labelled]
    auc_text = float(roc_auc_score(y, text_probs[:, 1])) if text_probs is not None else None
    auc_meta = None
    if lab_feats.shape[1] and lab_feats.to_numpy().std(axis=0).max() > 0:
        X = lab_feats.to_numpy(dtype=np.float64)
        # one OpenMP thread: on a shared 2-core box, oversubscribed OpenMP makes HGB 100x slower
        with threadpool_limits(limits=1, user_api="openmp"):
            res = oof_predict(X, y, np.ones(len(y), dtype=bool), folds, _make_model(seed))
        auc_meta = float(roc_auc_score(y, res.pred_probs[:, 1]))

    rates = {}
    lab_present = present[labelled]
    for t in lab_present.columns:
        v = lab_present[t].to_numpy()
        rates[t] = {"fraud": round(float(v[y == 1].mean()), 4), "legit": round(float(v[y == 0].mean()), 4)}
    driver, gap = None, 0.0
    if rates:
        driver = max(sorted(rates), key=lambda t: abs(rates[t]["fraud"] - rates[t]["legit"]))
        gap = rates[driver]["fraud"] - rates[driver]["legit"]

    meta_close = auc_meta is not None and auc_meta > INFO_AUC and (
        auc_text is None or auc_meta >= auc_text - margin)
    gap_big = abs(gap) > rate_gap
    where = (f"<{driver}> in {rates[driver]['fraud']:.0%} of fraud vs {rates[driver]['legit']:.0%} of legit records"
             if driver else "no placeholders")
    aucs = f"AUC anonymization-only {auc_meta:.3f} vs text {auc_text:.3f}" if auc_meta is not None and \
        auc_text is not None else f"AUC anonymization-only {auc_meta}"
    if meta_close or gap_big:
        status = "warning"
        why = ("the anonymization features alone predict the label nearly as well as the text" if meta_close else
               f"one placeholder's share differs between the classes by more than {rate_gap:g}")
        message = f"shortcut: {why} ({aucs}; driver {where})"
    elif (auc_meta is not None and auc_meta >= INFO_AUC) or abs(gap) >= INFO_GAP:
        status = "info"
        message = (f"anonymization features carry some signal, the text clearly more ({aucs}; driver {where}): "
                   "likely a true signal, not a shortcut")
    else:
        status = "ok"
        message = f"no shortcut ({aucs})"
    top = dict(sorted(rates.items(), key=lambda kv: -abs(kv[1]["fraud"] - kv[1]["legit"]))[:10])
    return {
        "status": status,
        "warning": status == "warning",
        "auc": None if auc_meta is None else round(auc_meta, 4),  # the anonymization-only model's (stable key)
        "auc_meta": None if auc_meta is None else round(auc_meta, 4),
        "auc_text": None if auc_text is None else round(auc_text, 4),
        "margin": margin,
        "driver": driver,
        "rate_gap": round(float(gap), 4),
        "rate_gap_warn": rate_gap,
        "placeholder_rates": top,
        "features": list(feats.columns),
        "message": message,
    }
