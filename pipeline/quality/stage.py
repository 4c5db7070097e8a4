"""`fraudslm quality`: score every anonymized record (out-of-fold probabilities, cleanlab label issues, outliers,
near-duplicates, text-level label conflicts, shortcut check), then apply the policy from params (flag | drop |
relabel) and hand the kept records to `split`. Score first, decide later: `scores.parquet` holds every score, so a
new policy or threshold never needs a refit."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, SGDClassifier

from pipeline.config import Params, QualityParams, resolve_path
from pipeline.errors import ConfigError, GateError
from pipeline.io import read_json, read_parquet, sha256_file, write_json, write_parquet
from pipeline.ledger import Ledger
from pipeline.quality.features import build_features
from pipeline.quality.groups import leakage_components
from pipeline.quality.issues import datalab_issues, dense_embedding, find_issues_iterated, text_label_conflicts
from pipeline.quality.report import class_balance, write_class_balance, write_review_queue
from pipeline.quality.shortcut import shortcut_check

REQUIRED = ("record_id", "source", "text", "label")
SCORE_COLUMNS = [
    "record_id", "source", "given_label", "is_label_issue", "label_quality_score", "suggested_label",
    "pred_prob_fraud", "is_outlier", "outlier_score", "is_near_duplicate", "near_duplicate_score", "label_conflict",
    "label_conflict_text", "label_error_posterior",
]
DECISION_COLUMNS = ["record_id", "source", "given_label", "label", "decision", "decision_reason"]


# --------------------------------------------------------------------------------------------------------- inputs
def read_upstream_gate(inp: Path) -> dict:
    """The anonymize gate must exist and have passed; its summary travels on in metrics (fail closed)."""
    path = inp / "gate.json"
    if not path.exists():
        raise GateError(f"{path}: anonymize gate result missing; refusing to process un-gated records")
    try:
        gate = read_json(path)
    except ValueError:
        raise GateError(f"{path}: unreadable gate result; refusing to process") from None
    if not isinstance(gate, dict) or gate.get("passed") is not True:
        raise GateError(f"{path}: anonymize gate did not pass; refusing to process")
    return gate_summary(gate, sha256_file(path))


def gate_summary(gate: dict, sha256: str | None = None) -> dict:
    keep = ("passed", "key_fingerprint", "residual", "checked_records", "original_values_checked", "canaries_checked")
    out = {k: gate[k] for k in keep if k in gate}
    if sha256:
        out["gate_sha256"] = sha256
    return out


def load_records(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ConfigError(f"{path}: records file not found")
    try:
        df = read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types; message has no record content
        raise ConfigError(f"{path}: unreadable Parquet ({type(exc).__name__})") from None
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    if df["record_id"].isna().any():
        row = int(np.flatnonzero(df["record_id"].isna().to_numpy())[0])
        raise ConfigError(f"{path}: row {row}: record_id is null")
    dup = df["record_id"].duplicated()
    if dup.any():
        rid = df.loc[dup, "record_id"].iloc[0]
        raise ConfigError(f"{path}: record_id {rid}: duplicated")
    lab = pd.to_numeric(df["label"], errors="coerce")
    bad = (lab.isna() & df["label"].notna()) | ~(lab.isna() | lab.isin([0, 1]))
    if bad.any():
        rid = df.loc[bad, "record_id"].iloc[0]
        raise ConfigError(f"{path}: record_id {rid}: label must be 0, 1 or null")
    df = df.copy()
    df["label"] = lab.astype("Int8")
    df["text"] = df["text"].astype("string").fillna("")
    df["source"] = df["source"].astype(str)
    if "label_conflict" not in df.columns:
        df["label_conflict"] = False
    df["label_conflict"] = df["label_conflict"].fillna(False).astype(bool)
    return df.sort_values("record_id", kind="mergesort").reset_index(drop=True)


# -------------------------------------------------------------------------------------------------------- scoring
def lbfgs_c(q: QualityParams, n_fit: int, value: float | str | None = None) -> float:
    """An L-BFGS model's C: `value` (default `q.lbfgs_c`), or for `auto` max(1, 1 / (alpha x n_fit)): scikit-learn's
    default C = 1 (the standard recipe's), raised on small folds so the per-row L2 penalty never exceeds `alpha`
    (LogisticRegression sums its loss over rows, so a fixed C penalizes each row of a small fold more). Measured
    (README): C = 1 under-fits the 600-row test fixture (label-issue recall 0.63; 0.85 at C = 20.8), and C = 0.125
    (alpha's penalty at 80,000 rows) over-regularizes the 100,000-row benchmark (precision 0.981 vs 0.991 at C = 1)."""
    value = q.lbfgs_c if value is None else value
    if value == "auto":
        return max(1.0, 1.0 / (q.alpha * max(int(n_fit), 1)))
    return float(value)


def model_factory(q: QualityParams, prevalence: float, n_minority: int, seed: int, n_fit: int | None = None):
    """The fold models' factory and its name. `n_fit`: rows each fold model is fitted on (for `lbfgs_c: auto`)."""
    if q.learner == "lbfgs":
        if n_fit is None and q.lbfgs_c == "auto":
            raise ValueError("model_factory: lbfgs_c 'auto' needs n_fit")
        c = lbfgs_c(q, n_fit or 0)

        # L-BFGS logistic regression: converged, smoother probabilities than SGD's; with the second view, label-issue
        # precision on SMS (10 flip seeds) 0.976 vs 0.969 for SGD alone, ~1.5x SGD's time at 100,000 rows (README)
        def base():
            return LogisticRegression(C=c, max_iter=1000, class_weight=q.class_weight)

        name = f"logistic-lbfgs(C={c:.3g})"
    else:
        # logistic regression fitted by SGD: linear in the number of non-zeros, ~3x cheaper than L-BFGS at 100,000 rows
        def base():
            return SGDClassifier(loss="log_loss", alpha=q.alpha, max_iter=q.max_iter, tol=1e-4,
                                 class_weight=q.class_weight, random_state=seed)

        name = "logistic-sgd"

    cv = int(min(3, n_minority // 2))
    if q.calibrate and prevalence < q.calibrate_below and cv >= 2:
        return (lambda: CalibratedClassifierCV(base(), method="sigmoid", cv=cv)), f"{name}+sigmoid(cv={cv})"
    return base, name


def second_view_factory(q: QualityParams, n_fit: int = 0):
    """The second view's model: L-BFGS logistic regression (the standard recipe's learner) on character n-grams plus
    the structured columns. `n_fit`: rows each fold model is fitted on (for `second_view_c: auto`)."""
    c = lbfgs_c(q, n_fit, q.second_view_c)

    def make():
        return LogisticRegression(C=c, max_iter=1000)

    make.C = c  # type: ignore[attr-defined]
    return make


def embedding_view_on(q: QualityParams, n_labelled: int) -> bool:
    """Whether the sentence-embedding view runs: `on`, or `auto` with at most `small_data_max_rows` labelled rows
    (the encoder is the stage's slowest part: ~6 ms per record on 2 cores)."""
    return q.embedding_view == "on" or (q.embedding_view == "auto" and 0 < n_labelled <= q.small_data_max_rows)


def confident_learning_passes(q: QualityParams, n_labelled: int) -> int:
    """Rounds of `find_issues_iterated`, at most: the configured number, or `auto` = 4 up to `small_data_max_rows`
    labelled rows and 2 above (measured: rounds 3-4 add demo recall, but at 100,000 rows break the 5-minute budget
    and raise the card false-positive rate; README "Quality and splits")."""
    if q.passes != "auto":
        return int(q.passes)
    return 4 if n_labelled <= q.small_data_max_rows else 2


def embedding_view_factory(q: QualityParams, n_fit: int = 0):
    """The embedding view's model: L-BFGS logistic regression on sentence embeddings + the structured columns."""
    c = lbfgs_c(q, n_fit, q.embedding_view_c)

    def make():
        return LogisticRegression(C=c, max_iter=1000)

    make.C = c  # type: ignore[attr-defined]
    return make


def embedding_features(df: pd.DataFrame, feats, q: QualityParams):
    """Sentence embeddings of the anonymized text (placeholders reduced to their type, so pseudonyms carry no
    signal) next to the structured columns of the main view."""
    import scipy.sparse as sp

    from pipeline.quality.embed import sentence_embeddings
    from pipeline.quality.features import placeholder_types

    texts = [placeholder_types(t) for t in df["text"].fillna("").astype(str)]
    emb = sentence_embeddings(texts, q.embedding_model, max_length=q.embedding_max_length)
    return sp.hstack([sp.csr_matrix(emb), feats.X[:, feats.text_columns:]], format="csr", dtype=np.float32)


def label_issue_groups(df: pd.DataFrame, q: QualityParams) -> np.ndarray:
    """Groups the label-issue folds keep whole. `duplicates` (default): near-duplicate clusters only, so a record and
    its copies are always scored by a model that saw none of them, while a customer's other records may inform the
    score (context a reviewer would also use; measured on the demo: P/R 0.857/0.868 with customer folds, 0.892/0.896
    with duplicate folds). `customer`: customer + near-duplicate components, as the split uses."""
    keys = ("dup_cluster",) if q.fold_groups == "duplicates" else ("group_id", "dup_cluster")
    return leakage_components(df, keys)


def score_records(df: pd.DataFrame, params: Params) -> tuple[pd.DataFrame, dict]:
    """All scores for every record (labelled rows out of fold; unlabelled rows by the fold models' average)."""
    q = params.quality
    seed = params.seed
    n = len(df)
    labelled = df["label"].notna().to_numpy()
    y = df.loc[labelled, "label"].astype(int).to_numpy()
    comps = leakage_components(df)  # customer + near-duplicate components (the split's groups)
    fold_comps = label_issue_groups(df, q)
    feats = build_features(df, q.max_features, novelty=q.group_novelty)
    counts = np.bincount(y, minlength=2)
    prevalence = counts[1] / max(counts.sum(), 1)
    n_fit = int(counts.sum()) * (q.k_folds - 1) // q.k_folds  # rows each fold model is fitted on
    make_model, model_name = model_factory(q, prevalence, int(counts.min()), seed, n_fit)
    second = None
    if q.second_view == "char_lr":
        make2 = second_view_factory(q, n_fit)
        second = (feats.char_view(), make2)
        model_name += f" + char-logistic(C={make2.C:.3g})"
    third = None
    if embedding_view_on(q, int(counts.sum())):
        make3 = embedding_view_factory(q, n_fit)
        third = (embedding_features(df, feats, q), make3)
        model_name += f" + embedding-logistic(C={make3.C:.3g})"

    res = find_issues_iterated(
        feats.X, y, labelled, fold_comps[labelled], make_model, k=q.k_folds, seed=seed,
        passes=confident_learning_passes(q, int(counts.sum())),
        filter_by=q.filter_by, frac_noise=q.frac_noise, second_view=second, posterior_check=q.posterior_check,
        posterior_flag=q.posterior_flag, second_view_weight=q.second_view_weight, embedding_view=third, embedding_view_weight=q.embedding_view_weight,
    )
    pp = res.oof.pred_probs.copy()
    assert res.pred_probs is not None
    pp[labelled] = res.pred_probs  # labelled rows: the probabilities the flags were chosen from
    scores = pd.DataFrame({"record_id": df["record_id"], "source": df["source"], "given_label": df["label"]})
    is_issue = np.zeros(n, dtype=bool)
    is_issue[labelled] = res.is_issue
    lqs = np.full(n, np.nan)
    lqs[labelled] = res.quality_score
    scores["is_label_issue"] = is_issue
    scores["label_quality_score"] = lqs
    post = np.full(n, np.nan)
    post[labelled] = res.posterior
    scores["label_error_posterior"] = post
    scores["suggested_label"] = pd.array(pp.argmax(axis=1), dtype="Int8")
    scores["pred_prob_fraud"] = pp[:, 1]

    if q.outliers:
        emb = dense_embedding(feats.X, q.embedding_dims, seed)
        dl = datalab_issues(emb)
    else:
        dl = datalab_issues(np.zeros((0, 1)))
        dl = pd.DataFrame({"is_outlier": np.zeros(n, bool), "outlier_score": np.full(n, np.nan),
                           "is_near_duplicate": np.zeros(n, bool), "near_duplicate_score": np.full(n, np.nan)})
    for col in dl.columns:
        scores[col] = dl[col].to_numpy()

    text_conf = text_label_conflicts(df, q.conflict_label_columns)
    scores["label_conflict_text"] = text_conf
    scores["label_conflict"] = df["label_conflict"].to_numpy() | text_conf

    # the shortcut check asks whether anonymization artefacts predict the label for unseen customers: customer folds
    shortcut = shortcut_check(df, y, labelled, comps[labelled], q.k_folds, seed,
                              folds=res.folds if q.fold_groups == "customer" else None)
    info = {
        "model": model_name,
        "features": {"text": feats.text_columns, "total": int(feats.X.shape[1]), "structured": feats.structured},
        "folds": res.oof.n_splits,
        "fold_groups": q.fold_groups,
        "rounds": res.rounds,
        "views": res.views,
        "noise_rates": {k: round(v, 4) for k, v in res.noise_rates.items()},
        "posterior_vetoed": res.vetoed,
        "novelty_columns": feats.novelty,
        "leakage_groups": int(len(np.unique(comps))) if n else 0,
        "shortcut": shortcut,
    }
    return scores, info


# --------------------------------------------------------------------------------------------------------- policy
def apply_policy(scores: pd.DataFrame, q: QualityParams) -> pd.DataFrame:
    """decision per record: keep | flag | relabel | drop, with a reason. Unlabelled rows are kept untouched."""
    labelled = scores["given_label"].notna().to_numpy()
    issue = scores["is_label_issue"].to_numpy(dtype=bool) & labelled
    conflict = scores["label_conflict"].to_numpy(dtype=bool) & labelled
    reason = np.where(issue & conflict, "label_issue+label_conflict",
                      np.where(issue, "label_issue", np.where(conflict, "label_conflict", "ok")))
    decision = np.full(len(scores), "keep", dtype=object)
    target = issue | conflict
    given = scores["given_label"].fillna(-1).astype(int).to_numpy()
    suggested = scores["suggested_label"].fillna(-1).astype(int).to_numpy()
    p_fraud = scores["pred_prob_fraud"].to_numpy(dtype=float)
    p_suggested = np.where(suggested == 1, p_fraud, 1.0 - p_fraud)
    new_label = given.copy()
    reason = reason.astype(object)
    if q.policy == "flag":
        decision[target] = "flag"
    elif q.policy == "drop":
        decision[target] = "drop"
    else:  # relabel
        confident = target & (suggested != given) & (p_suggested >= q.relabel_threshold)
        decision[confident] = "relabel"
        new_label[confident] = suggested[confident]
        rest = target & ~confident
        decision[rest] = "flag"
        agrees = rest & (suggested == given)
        reason[rest & ~agrees] = [r + ";below_relabel_threshold" for r in reason[rest & ~agrees]]
        reason[agrees] = [r + ";model_agrees_with_label" for r in reason[agrees]]
    reason[~labelled] = "unlabelled"
    out = scores[["record_id", "source", "given_label"]].copy()
    lab = pd.Series(new_label, index=out.index).astype("Int8")
    lab[~labelled] = pd.NA
    out["label"] = lab
    out["decision"] = decision.astype(str)
    out["decision_reason"] = reason.astype(str)
    return out


# ------------------------------------------------------------------------------------------------------ evaluation
def ground_truth_eval(scores: pd.DataFrame, decisions: pd.DataFrame, truth_dir: Path) -> dict | None:
    """Label-issue precision/recall against the demo's flipped labels (evaluation only; never used to decide)."""
    path = truth_dir / "labels.csv"
    if not path.exists():
        return None
    try:
        truth = pd.read_csv(path, dtype={"source": str, "key": str})
    except Exception:  # noqa: BLE001
        return {"error": f"{path}: unreadable"}
    if not {"source", "key", "flipped"} <= set(truth.columns):
        return {"error": f"{path}: missing columns"}
    truth["record_id"] = [
        hashlib.sha256(f"{s}\x1f{k}".encode()).hexdigest()[:16] for s, k in zip(truth["source"], truth["key"])
    ]
    truth["flipped"] = truth["flipped"].astype(str).str.lower().isin(["1", "true", "yes"])
    m = scores.merge(truth[["record_id", "flipped"]], on="record_id", how="inner")
    m = m[m["given_label"].notna()]
    if m.empty:
        return {"matched": 0}
    pred = m["is_label_issue"].to_numpy(bool)
    flip = m["flipped"].to_numpy(bool)
    return {"matched": int(len(m)), **pr_metrics(pred, flip)}


def pr_metrics(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    p = tp / pred.sum() if pred.sum() else None
    r = tp / truth.sum() if truth.sum() else None
    f1 = 2 * p * r / (p + r) if p and r else None
    return {"flagged": int(pred.sum()), "true": int(truth.sum()), "tp": tp, "precision": p, "recall": r, "f1": f1}


# ------------------------------------------------------------------------------------------------------------ stage
def run_quality(inp: Path, out: Path, params: Params) -> dict:
    inp, out = Path(inp), Path(out)
    q = params.quality
    upstream_gate = read_upstream_gate(inp)
    records_path = inp / "records.parquet"
    df = load_records(records_path)
    if df.empty:
        raise GateError(f"{records_path}: no records to assess")

    scores, info = score_records(df, params)
    decisions = apply_policy(scores, q)
    kept_mask = (decisions["decision"] != "drop").to_numpy()

    records = df.copy()
    records["given_label"] = df["label"]
    records["label"] = decisions["label"].array
    for col in SCORE_COLUMNS[3:]:
        records[col] = scores[col].to_numpy()
    records["decision"] = decisions["decision"].to_numpy()
    records["decision_reason"] = decisions["decision_reason"].to_numpy()
    records["quality_flag"] = records["decision"] == "flag"
    kept = records[kept_mask].reset_index(drop=True)

    ledger = Ledger("quality")
    for src, frame in decisions.groupby("source", sort=True):
        ledger.read(str(src), len(frame))
        dropped = frame[frame["decision"] == "drop"]
        ledger.accept(str(src), len(frame) - len(dropped))
        for reason, cnt in dropped["decision_reason"].value_counts().sort_index().items():
            ledger.drop(str(src), str(reason), int(cnt))
    ledger.extra["decisions"] = {k: int(v) for k, v in decisions["decision"].value_counts().sort_index().items()}
    ledger.extra["input_sha256"] = sha256_file(records_path)
    if not ledger.balanced:
        raise GateError(f"quality: ledger does not balance for {', '.join(ledger.unbalanced())}")

    labelled = scores["given_label"].notna()
    n_lab = int(labelled.sum())
    before = class_balance(df)
    after = class_balance(kept)
    shortcut = info.pop("shortcut")
    metrics = {
        "stage": "quality",
        "records": len(df),
        "labelled": n_lab,
        "unlabelled": int(len(df) - n_lab),
        "kept": int(kept_mask.sum()),
        "policy": q.policy,
        "label_issues": {
            "count": int(scores["is_label_issue"].sum()),
            "rate": float(scores["is_label_issue"].sum() / n_lab) if n_lab else None,
            "by_source": {str(k): int(v) for k, v in scores.groupby("source")["is_label_issue"].sum().items()},
            "method": f"cleanlab.filter.find_label_issues(filter_by={q.filter_by}) on {info['folds']}-fold "
                      f"out-of-fold probabilities, {len(info['rounds'])} round(s)"
                      + (f", mean of {len(info['views'])} views" if len(info["views"]) > 1 else "")
                      + (f", noise-posterior check ({q.posterior_check})" if q.posterior_check != "none" else "")
                      + (f", noise-posterior flag ({q.posterior_flag})" if q.posterior_flag != "none" else ""),
            **info,
        },
        "label_conflicts": {
            "count": int((scores["label_conflict"] & labelled).sum()),
            "from_ingest": int((df["label_conflict"] & labelled).sum()),
            "same_text_different_label": int((scores["label_conflict_text"] & labelled).sum()),
        },
        "outliers": int(scores["is_outlier"].sum()),
        "near_duplicates": int(scores["is_near_duplicate"].sum()),
        "decisions": ledger.extra["decisions"],
        "shortcut": {**shortcut, "warn_threshold": q.shortcut_auc_warn,
                     "warning": bool(shortcut.get("auc") is not None and shortcut["auc"] >= q.shortcut_auc_warn)},
        "imbalance": {"before": before, "after": after},
        "upstream_gate": upstream_gate,
        "input_sha256": ledger.extra["input_sha256"],
        "params_digest": params.digest(),
    }
    truth_dir = resolve_path(params.paths.ground_truth)
    if truth_dir.exists():
        ev = ground_truth_eval(scores, decisions, truth_dir)
        if ev is not None:
            metrics["ground_truth"] = ev

    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "scores.parquet", scores[SCORE_COLUMNS].reset_index(drop=True))
    write_parquet(out / "decisions.parquet", decisions[DECISION_COLUMNS].reset_index(drop=True))
    write_parquet(out / "records.parquet", kept)
    metrics["review_queue"] = write_review_queue(records, out)
    write_class_balance(before, after, out)
    write_json(out / "metrics.json", metrics)
    ledger.write(out)
    if metrics["shortcut"]["warning"]:
        print(
            f"fraudslm quality: warning: anonymization features predict the label (shortcut AUC "
            f"{shortcut['auc']:.3f} >= {q.shortcut_auc_warn})",
            file=sys.stderr,
        )
    return metrics
