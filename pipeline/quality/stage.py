"""`fraudslm quality`: score every anonymized record (out-of-fold probabilities, cleanlab label issues, outliers,
near-duplicates, text-level label conflicts, shortcut check), then apply the policy from params (flag | drop |
relabel) and hand the kept records to `split`. Score first, decide later: `scores.parquet` holds every score, so a
new policy or threshold never needs a refit."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from pipeline.ids import record_id
from pipeline.config import Params, QualityParams, ground_truth_dir
from pipeline.errors import ConfigError, GateError
from pipeline.contracts import QualityMetrics, write_metrics
from pipeline.provenance import gate_passport, write_provenance
from pipeline.io import read_json, read_parquet, sha256_file, write_parquet
from pipeline.ledger import Ledger
from pipeline.quality.features import build_features
from pipeline.quality.groups import leakage_components
from pipeline.quality.issues import datalab_issues, dense_embedding, find_issues, text_label_conflicts
from pipeline.quality.report import class_balance, write_class_balance, write_review_queue
from pipeline.quality.shortcut import shortcut_check

REQUIRED = ("record_id", "source", "text", "label")
SCORE_COLUMNS = [
    "record_id", "source", "given_label", "is_label_issue", "label_quality_score", "suggested_label",
    "pred_prob_fraud", "is_outlier", "outlier_score", "is_near_duplicate", "near_duplicate_score", "label_conflict",
    "label_conflict_text",
]
OUTLIER_DIMS = 64  # size of the low-rank view the outlier / near-duplicate k-NN graph is built on
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
    return gate_passport(gate, sha256_file(path)).model_dump(mode="json", exclude_none=True)


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
def model_factory(q: QualityParams):
    """The fold models' factory and a self-describing name: L-BFGS logistic regression, C = `q.c` (the standard
    recipe's learner; measured on demo, SMS and smishing at 5% noise: C = 1 beat the earlier small-data rule
    max(1, 10,000 / rows per fold model) on 6 of 6 data set x seed pairs,
    benchmarks/results/quality_design_checks.json)."""
    c = float(q.c)

    def make():
        return LogisticRegression(C=c, max_iter=1000)

    return make, f"logistic regression (L-BFGS, C={c:.3g})"


def label_issue_groups(df: pd.DataFrame, q: QualityParams) -> np.ndarray:
    """Groups the label-issue folds keep whole. `duplicates` (default): near-duplicate clusters only, so a record and
    its copies are always scored by a model that saw none of them, while a customer's other records may inform the
    score. `customer`: customer + near-duplicate components, as the split uses."""
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
    feats = build_features(df, q.max_features)
    make_model, model_name = model_factory(q)

    # two models on the same folds, their out-of-fold probabilities averaged: one on every feature, one on the
    # character n-grams alone (the standard recipe's features). Chosen by the worst case across data sets and noise
    # models (benchmarks/results/label_noise.json): the average was at least the standard recipe's F1 in every cell
    # at 5%, where the all-features model alone fell below it on text-only data (SMS, smishing)
    res = find_issues(feats.X, y, labelled, fold_comps[labelled], make_model, k=q.k_folds, seed=seed,
                      filter_by=q.filter_by, extra_views=[feats.char_view])
    pp = res.oof.pred_probs.copy()
    scores = pd.DataFrame({"record_id": df["record_id"], "source": df["source"], "given_label": df["label"]})
    is_issue = np.zeros(n, dtype=bool)
    is_issue[labelled] = res.is_issue
    lqs = np.full(n, np.nan)
    lqs[labelled] = res.quality_score
    scores["is_label_issue"] = is_issue
    scores["label_quality_score"] = lqs
    scores["suggested_label"] = pd.array(pp.argmax(axis=1), dtype="Int8")
    scores["pred_prob_fraud"] = pp[:, 1]

    if q.outliers:
        dl = datalab_issues(dense_embedding(feats.X, OUTLIER_DIMS, seed))
    else:
        dl = pd.DataFrame({"is_outlier": np.zeros(n, bool), "outlier_score": np.full(n, np.nan),
                           "is_near_duplicate": np.zeros(n, bool), "near_duplicate_score": np.full(n, np.nan)})
    for col in dl.columns:
        scores[col] = dl[col].to_numpy()

    text_conf = text_label_conflicts(df, q.conflict_label_columns)
    scores["label_conflict_text"] = text_conf
    scores["label_conflict"] = df["label_conflict"].to_numpy() | text_conf

    # the shortcut check compares an anonymization-features-only model with the text model (its out-of-fold
    # probabilities above), on the same folds
    shortcut = shortcut_check(df, y, labelled, res.folds, res.pred_probs, seed, margin=q.shortcut_margin,
                              rate_gap=q.shortcut_rate_gap)
    info = {
        "model": model_name,
        "features": {"text": feats.text_columns, "total": int(feats.X.shape[1]), "structured": feats.structured},
        "folds": res.oof.n_splits,
        "fold_groups": q.fold_groups,
        "rounds": 1,  # fits of the fold models (each round = k_folds fits per view)
        "views": ["word + character TF-IDF" + (" + structured columns" if feats.structured else ""),
                  "character TF-IDF"],
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
    truth["record_id"] = [record_id(s, k) for s, k in zip(truth["source"], truth["key"])]
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
                      f"out-of-fold probabilities, the mean of two {info['model']} models: one on word + character "
                      "TF-IDF" + (" + structured columns" if info["features"]["structured"] else "")
                      + ", one on character TF-IDF only (the standard recipe's features)"
                      + f" (folds keep {'near-duplicates' if q.fold_groups == 'duplicates' else 'customers'} "
                        "together)",
            "withdrawn": 0,  # the stage withdraws no flag (no prior-based check); every flag is in decisions.parquet
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
        "shortcut": shortcut,
        "imbalance": {"before": before, "after": after},
        "upstream_gate": upstream_gate,
        "input_sha256": ledger.extra["input_sha256"],
        "params_digest": params.digest(),
    }
    truth_dir = ground_truth_dir(params)  # only when paths.ground_truth names one (never silently)
    if truth_dir is not None:
        ev = ground_truth_eval(scores, decisions, truth_dir)
        if ev is not None:
            metrics["ground_truth"] = ev

    out.mkdir(parents=True, exist_ok=True)
    write_parquet(out / "scores.parquet", scores[SCORE_COLUMNS].reset_index(drop=True))
    write_parquet(out / "decisions.parquet", decisions[DECISION_COLUMNS].reset_index(drop=True))
    write_parquet(out / "records.parquet", kept)
    metrics["review_queue"] = write_review_queue(records, out)
    write_class_balance(before, after, out)
    write_metrics(out, QualityMetrics.model_validate(metrics))
    ledger.write(out)
    write_provenance(out, "quality", gate=upstream_gate, params_digest=metrics["params_digest"])
    if shortcut.get("status") == "warning":
        print(f"fraudslm quality: warning: {shortcut['message']}", file=sys.stderr)
    elif shortcut.get("status") == "info":
        print(f"fraudslm quality: note: {shortcut['message']}", file=sys.stderr)
    return metrics
