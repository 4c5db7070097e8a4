"""Out-of-fold predicted probabilities. Every labelled row is scored by a model that never saw it; unlabelled rows
are scored by the average of the fold models (none of which saw them either). The bookkeeping is checked at run time
(fail closed) and exposed for tests."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.sparse as sp
from sklearn.base import ClassifierMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from pipeline.errors import GateError


@dataclass
class OOFResult:
    pred_probs: np.ndarray  # (n_rows, 2) for every row, labelled or not
    fold: np.ndarray  # fold that scored each labelled row (-1 for unlabelled rows)
    train_rows: list[np.ndarray] = field(default_factory=list)  # row indices each fold model was fit on
    n_splits: int = 0


# StratifiedGroupKFold scans every fold for every group (seconds per call at 10,000 groups, linear beyond); above
# this many groups a greedy assignment does the same job (groups intact, positives spread evenly) in milliseconds
GREEDY_GROUPS_ABOVE = 5000


def greedy_group_folds(y: np.ndarray, groups: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Group K-fold with the positives spread evenly: groups in random order, those with more positives first, each
    to the fold with the fewest positives so far (ties: fewest rows)."""
    _, inv = np.unique(groups, return_inverse=True)
    n_groups = int(inv.max()) + 1
    pos = np.bincount(inv, weights=y.astype(float), minlength=n_groups)
    size = np.bincount(inv, minlength=n_groups)
    perm = np.random.default_rng(seed).permutation(n_groups)
    order = perm[np.lexsort((-size[perm], -pos[perm]))]
    fold_of = np.empty(n_groups, dtype=np.int64)
    f_pos, f_size = np.zeros(k), np.zeros(k)
    for g in order:
        f = int(np.lexsort((f_size, f_pos))[0]) if pos[g] > 0 else int(np.argmin(f_size))
        fold_of[g] = f
        f_pos[f] += pos[g]
        f_size[f] += size[g]
    row_fold = fold_of[inv]
    idx = np.arange(len(y))
    return [(idx[row_fold != f], idx[row_fold == f]) for f in range(k)]


def make_folds(y: np.ndarray, groups: np.ndarray | None, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (group) K-fold over the labelled rows. K shrinks to the size of the rarest class (min 2)."""
    counts = np.bincount(y.astype(int), minlength=2)
    k_eff = int(min(k, counts.min()))
    if k_eff < 2:
        raise GateError(
            f"quality: need at least 2 labelled examples per class for out-of-fold scoring, got {counts.tolist()}"
        )
    dummy = np.zeros(len(y))
    if groups is not None and len(np.unique(groups)) < len(groups):
        n_groups = len(np.unique(groups))
        k_eff = min(k_eff, n_groups)
        if n_groups > GREEDY_GROUPS_ABOVE:
            folds = greedy_group_folds(y, groups, k_eff, seed)
        else:
            splitter = StratifiedGroupKFold(n_splits=k_eff, shuffle=True, random_state=seed)
            folds = list(splitter.split(dummy, y, groups))
        # a fold without one of the classes cannot score calibrated probabilities: fall back to row folds
        if all(len(np.unique(y[tr])) == 2 for tr, _ in folds):
            return folds
    splitter = StratifiedKFold(n_splits=k_eff, shuffle=True, random_state=seed)
    return list(splitter.split(dummy, y))


def oof_predict(
    X: sp.csr_matrix | np.ndarray,
    y: np.ndarray,
    labelled: np.ndarray,
    folds: list[tuple[np.ndarray, np.ndarray]],
    make_model: Callable[[], ClassifierMixin],
    progress: str | None = None,
) -> OOFResult:
    """`folds` index into the labelled rows (`labelled` is a boolean mask over all rows). `progress`: a label for a
    progress bar over the fold fits on stderr (tqdm; off when stderr is not a terminal)."""
    from tqdm import tqdm

    lab_idx = np.flatnonzero(labelled)
    unl_idx = np.flatnonzero(~labelled)
    X_lab = X[lab_idx]
    X_unl = X[unl_idx] if len(unl_idx) else None
    probs = np.full((X.shape[0], 2), np.nan)
    fold_of = np.full(X.shape[0], -1, dtype=np.int64)
    unl_sum = np.zeros((len(unl_idx), 2))
    trained: list[np.ndarray] = []
    bar = tqdm(folds, desc=progress, unit="fold", file=sys.stderr, disable=None if progress else True, leave=False)
    for f, (tr, te) in enumerate(bar):
        if np.intersect1d(tr, te).size:
            raise GateError("quality: out-of-fold bookkeeping error (a row would be scored by a model fit on it)")
        model = make_model()
        with warnings.catch_warnings():
            # L-BFGS may stop at max_iter on a hard fold; the OOF probabilities are what is evaluated
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X_lab[tr], y[tr])
        cls = list(model.classes_)
        p = model.predict_proba(X_lab[te])
        probs[lab_idx[te]] = _two_columns(p, cls)
        fold_of[lab_idx[te]] = f
        if X_unl is not None:
            unl_sum += _two_columns(model.predict_proba(X_unl), cls)
        trained.append(lab_idx[tr])
    if X_unl is not None:
        probs[unl_idx] = unl_sum / len(folds)
    if np.isnan(probs[lab_idx]).any():
        raise GateError("quality: out-of-fold scoring left labelled rows unscored")
    return OOFResult(pred_probs=probs, fold=fold_of, train_rows=trained, n_splits=len(folds))


def _two_columns(p: np.ndarray, classes: list) -> np.ndarray:
    out = np.zeros((p.shape[0], 2))
    for j, c in enumerate(classes):
        out[:, int(c)] = p[:, j]
    return out
