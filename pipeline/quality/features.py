"""Feature matrices for the quality baseline: TF-IDF (word + character n-grams) of the anonymized text plus one-hot /
numeric structured columns. The vectorizers are label-free and fitted on all rows; only the classifier sees labels
(and only out of fold, see `oof.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import OneHotEncoder

# columns that are identifiers, targets or bookkeeping, never model inputs
CORE_COLUMNS = frozenset(
    {
        "record_id", "source_key", "text", "label", "group_id", "event_time", "dup_cluster", "label_conflict",
        "n_entities", "label_raw",
    }
)
QUALITY_COLUMNS = frozenset(
    {
        "is_label_issue", "label_quality_score", "suggested_label", "pred_prob_fraud", "is_outlier", "outlier_score",
        "is_near_duplicate", "near_duplicate_score", "decision", "decision_reason", "given_label", "quality_flag",
        "label_conflict_text", "weight", "label_error_posterior",
    }
)
MAX_CATEGORIES = 50
# pseudonym tokens are per-value (keyed hashes): as features they would memorise customers, so the text model sees
# their type only (<PERSON>), while the shortcut check counts them separately.
_TOKEN_RE = re.compile(r"<([A-Z][A-Z_]*?)(?:_[0-9a-f]{6,})?>")


def placeholder_types(text: str) -> str:
    return _TOKEN_RE.sub(lambda m: f" <{m.group(1)}> ", text)


@dataclass
class FeatureSet:
    X: sp.csr_matrix
    text_columns: int
    structured: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    novelty: list[str] = field(default_factory=list)  # columns with a "new for this customer" indicator
    char_columns: tuple[int, int] = (0, 0)  # [start, end) of the character TF-IDF block in X

    @property
    def char_view(self) -> sp.csr_matrix:
        """The character TF-IDF block alone: the standard recipe's features (char_wb 2-5) on the same rows."""
        return self.X[:, self.char_columns[0]:self.char_columns[1]]


def structured_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(categorical, numeric) extra columns usable as features; ID-like high-cardinality columns are skipped."""
    cats, nums = [], []
    for col in sorted(df.columns):
        if col in CORE_COLUMNS or col in QUALITY_COLUMNS:
            continue
        s = df[col]
        if pd.api.types.is_bool_dtype(s) or not (
            pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)
        ):
            if s.nunique(dropna=True) <= MAX_CATEGORIES:
                cats.append(col)
        elif pd.api.types.is_numeric_dtype(s):
            nums.append(col)
    return cats, nums


def novelty_columns(df: pd.DataFrame, group_column: str = "group_id") -> list[str]:
    """Non-numeric structured columns (any cardinality: IP prefix, card token, currency, channel ...) whose value can
    be new for a customer."""
    if group_column not in df.columns:
        return []
    out = []
    for col in sorted(df.columns):
        if col in CORE_COLUMNS or col in QUALITY_COLUMNS or col in ("source", group_column):
            continue
        s = df[col]
        if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            continue
        if pd.api.types.is_datetime64_any_dtype(s) or not s.notna().any():
            continue
        out.append(col)
    return out


def group_novelty(df: pd.DataFrame, columns: list[str], group_column: str = "group_id") -> sp.csr_matrix:
    """One indicator per column: the record's value appears in no other record of the same customer (pseudonymous
    `group_id`), for customers with at least two records. Label-free context a fraud analyst reads first (a new IP
    range, card or currency for this customer); a linear model over one-hot values cannot express it."""
    n = len(df)
    if not columns or n == 0:
        return sp.csr_matrix((n, 0), dtype=np.float32)
    g_codes, _ = pd.factorize(df[group_column].astype("string"), use_na_sentinel=True)
    has_group = g_codes >= 0
    g_size = np.bincount(g_codes[has_group], minlength=int(g_codes.max()) + 1 if has_group.any() else 0)
    multi = np.zeros(n, dtype=bool)
    multi[has_group] = g_size[g_codes[has_group]] > 1
    cols = []
    for col in columns:
        v_codes, uniq = pd.factorize(df[col].astype("string"), use_na_sentinel=True)
        ok = multi & (v_codes >= 0)
        key = g_codes[ok].astype(np.int64) * (len(uniq) + 1) + v_codes[ok]
        _, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
        novel = np.zeros(n, dtype=np.float32)
        novel[np.flatnonzero(ok)[cnt[inv] == 1]] = 1.0
        cols.append(novel)
    return sp.csr_matrix(np.column_stack(cols))


def build_features(
    df: pd.DataFrame, max_features: int, *, char_ngrams: tuple[int, int] = (2, 5), word_ngrams: tuple[int, int] = (1, 2),
    novelty: bool = True,
) -> FeatureSet:
    texts = df["text"].fillna("").astype(str).map(placeholder_types)
    n = len(df)
    word_max = max(max_features // 2, 50)
    char_max = max(max_features - word_max, 50)
    blocks: list[sp.spmatrix] = []
    min_df = 2 if n >= 50 else 1
    word = TfidfVectorizer(
        analyzer="word", ngram_range=word_ngrams, sublinear_tf=True, min_df=min_df, max_features=word_max,
        token_pattern=r"(?u)<[A-Z_]+>|\b\w+\b", lowercase=True, dtype=np.float32,
    )
    char = TfidfVectorizer(
        analyzer="char_wb", ngram_range=char_ngrams, sublinear_tf=True, min_df=min_df, max_features=char_max,
        lowercase=True, dtype=np.float32,
    )
    for vec in (word, char):
        try:
            blocks.append(vec.fit_transform(texts))
        except ValueError:  # empty vocabulary (e.g. all texts empty)
            blocks.append(sp.csr_matrix((n, 0), dtype=np.float32))
    text_cols = sum(b.shape[1] for b in blocks)
    char_cols = (blocks[0].shape[1], text_cols)

    cats, nums = structured_columns(df)
    if cats:
        cat_frame = df[cats].astype("string").fillna("<missing>").astype(object)
        enc = OneHotEncoder(handle_unknown="ignore", min_frequency=min(5, max(1, n // 100)), dtype=np.float32)
        blocks.append(enc.fit_transform(cat_frame))
    if nums:
        # quantile bins, one-hot: robust to scale and outliers, and lets a linear model bend (e.g. amount)
        blocks.append(_binned(df[nums].astype("float64").to_numpy()))
    nov = novelty_columns(df) if novelty else []
    if nov:
        blocks.append(group_novelty(df, nov))
    X = sp.hstack(blocks, format="csr", dtype=np.float32) if blocks else sp.csr_matrix((n, 0))
    return FeatureSet(X=X, text_columns=text_cols, structured=cats + nums, categorical=cats, numeric=nums,
                      novelty=nov, char_columns=char_cols)


def _binned(num: np.ndarray, n_bins: int = 10) -> sp.csr_matrix:
    """One-hot quantile bins per numeric column; a missing value gets its own (all-zero bins + indicator) column."""
    cols = []
    for j in range(num.shape[1]):
        v = num[:, j]
        ok = ~np.isnan(v)
        if not ok.any():
            continue
        edges = np.unique(np.quantile(v[ok], np.linspace(0, 1, n_bins + 1)[1:-1]))
        b = np.where(ok, np.searchsorted(edges, np.nan_to_num(v), side="right"), len(edges) + 1)
        cols.append(sp.csr_matrix((np.ones(len(v), np.float32), (np.arange(len(v)), b)), shape=(len(v), len(edges) + 2)))
    return sp.hstack(cols, format="csr", dtype=np.float32) if cols else sp.csr_matrix((num.shape[0], 0), dtype=np.float32)
