"""Evaluation metrics for the binary fraud classifier (positive class = fraud = 1).

PR-AUC is average precision (sklearn), the ranking metric that stays honest under class imbalance. The decision
threshold is chosen on the validation split (maximising F1) and then applied unchanged to the test split.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve


def _both_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(y.sum()) < y.size


def choose_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """Threshold maximising F1 on (y, p); 0.5 when F1 is undefined (a single class)."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if not _both_classes(y):
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    best = int(np.argmax(f1[:-1])) if thresholds.size else 0  # the last point has no threshold
    return float(thresholds[best]) if thresholds.size else 0.5


def recall_at_fpr(y: np.ndarray, p: np.ndarray, max_fpr: float = 0.01) -> float | None:
    """Highest recall (TPR) reachable with a false-positive rate at most `max_fpr`."""
    if not _both_classes(y):
        return None
    fpr, tpr, _ = roc_curve(y, p)
    ok = fpr <= max_fpr + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, Any]:
    """PR-AUC, ROC-AUC, precision/recall/F1 at `threshold`, recall at 1% FPR, counts."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    pred = p >= threshold
    tp = int((pred & (y == 1)).sum())
    fp = int((pred & (y == 0)).sum())
    fn = int((~pred & (y == 1)).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = _both_classes(y)
    return {
        "n": int(y.size),
        "n_fraud": int(y.sum()),
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "threshold": float(threshold),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "recall_at_1pct_fpr": recall_at_fpr(y, p, 0.01),
    }


def pr_curve_table(y: np.ndarray, p: np.ndarray) -> list[dict[str, float]]:
    """Rows (recall, precision, threshold) of the precision-recall curve, for DVC plots."""
    y, p = np.asarray(y, dtype=int), np.asarray(p, dtype=float)
    if not _both_classes(y):
        return []
    precision, recall, thresholds = precision_recall_curve(y, p)
    rows = []
    for i in range(len(precision)):
        t = float(thresholds[i]) if i < len(thresholds) else 1.0
        rows.append({"recall": round(float(recall[i]), 6), "precision": round(float(precision[i]), 6),
                     "threshold": round(t, 6)})
    return rows


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x
