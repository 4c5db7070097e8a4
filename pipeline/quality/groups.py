"""Leakage groups: records that share a customer (`group_id`) or a near-duplicate cluster (`dup_cluster`) form one
connected component; folds (quality) and splits (split) never cut through a component."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components


def leakage_components(df: pd.DataFrame, keys: tuple[str, ...] = ("group_id", "dup_cluster")) -> np.ndarray:
    """Component id per row (0..n_components-1, numbered in order of first appearance after sorting by record_id,
    so the numbering is deterministic). A null key never links rows: a record with null `group_id` is its own group
    unless its `dup_cluster` links it to others."""
    n = len(df)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    offset = n
    for key in keys:
        if key not in df.columns:
            continue
        col = df[key]
        present = col.notna().to_numpy()
        if not present.any():
            continue
        codes, _ = pd.factorize(col[present].astype(str), sort=True)
        idx = np.flatnonzero(present)
        rows.append(idx)
        cols.append(codes.astype(np.int64) + offset)
        offset += int(codes.max()) + 1
    if not rows:
        return _renumber(np.arange(n), df)
    r = np.concatenate(rows)
    c = np.concatenate(cols)
    # bipartite graph: record nodes 0..n-1, key nodes n..offset-1
    adj = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(offset, offset)).tocsr()
    _, labels = connected_components(adj, directed=False)
    return _renumber(labels[:n], df)


def _renumber(labels: np.ndarray, df: pd.DataFrame) -> np.ndarray:
    """Stable numbering independent of row order: components ordered by their smallest record_id."""
    if "record_id" in df.columns:
        order = np.argsort(df["record_id"].astype(str).to_numpy(), kind="stable")
    else:
        order = np.arange(len(labels))
    _, first = np.unique(labels[order], return_index=True)
    ranked = np.empty(labels.max() + 1, dtype=np.int64)
    comp_in_order = labels[order][np.sort(first)]
    ranked[comp_in_order] = np.arange(len(comp_in_order))
    return ranked[labels]
