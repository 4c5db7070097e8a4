"""Label-issue study: where our detector, the standard recipe and the alternatives tried sit on the precision /
recall frontier, with the fold-assignment noise of each measured, and a clean-label reference.

    .venv/bin/python -m benchmarks.study_label_issues              # about 10 min on 2 cores
    .venv/bin/python -m benchmarks.study_label_issues --only sms   # sms | demo

Writes benchmarks/results/quality_study.json. Every detector on a data set sees the same records and, where it uses
folds, the same fold seed (the standard recipe keeps its own StratifiedKFold, as in `bench_quality`). Data:
- `sms`: ../shared/data/sms_spam/dev.csv, 5% of labels flipped at random (flip seeds 42, 7, 1234 as in
  `bench_quality`), fold seeds 0, 1, 2 (one per flip seed).
- `demo`: the project's demo (n=8000, 5% flips) as prepared by `bench_quality`, fold seeds 0-4.
Detectors (P / R against the flips):
- `standard`: character TF-IDF + logistic regression, 5-fold out-of-fold, `find_label_issues` defaults.
- `ours`: the quality stage's detector with params.yaml defaults (`find_issues_iterated`, 2 rounds, customer novelty
  features, noise-posterior check on majority-labelled flags); `ours_without_posterior_check`: the same probabilities
  flagged by `find_label_issues` alone.
- `ours_1_round`: the same, `quality.passes: 1`.
- `ours_ranking_at_standard_counts` / `standard_ranking_at_our_counts`: each model's per-class margin ranking cut at
  the other's per-class flag counts, which separates ranking quality from how many records get flagged.
- `lbfgs_lr_on_our_features`: scikit-learn LogisticRegression(C=1) on the stage's features, one round.
- `ours_plus_char_lr`: mean of our final-round probabilities and a character-TF-IDF logistic regression refitted
  without our round-1 flags.
- `noise_aware_lr_a{alpha}`: a logistic model of the *true* label fitted through the label-noise channel
  (forward-corrected likelihood: P(given=1|x) = r01 + (1 - r01 - r10) * sigmoid(w.x), with r01 / r10 from our
  detector's per-class flag counts), its clean posterior fed to `find_label_issues`; `..._plus_ours` averages it with
  our final-round probabilities.
- `clean_label_reference`: our model trained on the TRUE labels (same folds, out of fold), its probabilities fed to
  `find_label_issues` with the given labels. Not a detector (it needs the truth): what the same model family and
  flagging rule reach when label noise does not distort the fit.
`best_cut_at_recall_085` (per run) and `mean_best_cut_at_recall_085`: for several of these rankings, the highest
precision that ANY choice of per-class flag counts reaches at recall >= 0.85 (counts picked with the truth: a bound on
every count rule, e.g. `frac_noise`, for that ranking).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import expit

from benchmarks import bench_quality as bq

RESULTS = bq.ROOT / "benchmarks" / "results" / "quality_study.json"


class NoiseAwareLR:
    """Logistic model of the true label, fitted by L-BFGS through a known label-flip channel (forward correction):
    P(given=1 | x) = r01 + (1 - r01 - r10) * sigmoid(w.x + b). `predict_proba` returns the clean posterior."""

    def __init__(self, r01: float, r10: float, alpha: float = 1e-4, max_iter: int = 300):
        self.r01, self.r10, self.alpha, self.max_iter = r01, r10, alpha, max_iter

    def fit(self, X, y):
        X = sp.csr_matrix(X, dtype=np.float64)
        n, d = X.shape
        y = np.asarray(y, dtype=float)
        a, b, lam = self.r01, 1.0 - self.r01 - self.r10, self.alpha * n

        def loss_grad(theta):
            w, c = theta[:d], theta[d]
            s = expit(X @ w + c)
            q = np.clip(a + b * s, 1e-12, 1 - 1e-12)
            loss = -(y * np.log(q) + (1 - y) * np.log(1 - q)).sum() + 0.5 * lam * w @ w
            g = -(y / q - (1 - y) / (1 - q)) * b * s * (1 - s)
            return loss / n, np.r_[X.T @ g + lam * w, g.sum()] / n

        theta = np.zeros(d + 1)
        p = float(np.clip(y.mean(), 1e-3, 1 - 1e-3))
        theta[d] = np.log(p / (1 - p))
        res = minimize(loss_grad, theta, jac=True, method="L-BFGS-B", options={"maxiter": self.max_iter})
        self.coef_, self.intercept_, self.classes_ = res.x[:d], res.x[d], np.array([0, 1])
        return self

    def predict_proba(self, X):
        s = expit(sp.csr_matrix(X) @ self.coef_ + self.intercept_)
        return np.c_[1 - s, s]


class LBFGSLogReg:
    def __init__(self, C: float = 1.0):
        self.C = C

    def fit(self, X, y):
        from sklearn.linear_model import LogisticRegression

        self.m = LogisticRegression(C=self.C, max_iter=2000).fit(X, y)
        self.classes_ = self.m.classes_
        return self

    def predict_proba(self, X):
        return self.m.predict_proba(X)


def _pr(pred: np.ndarray, flip: np.ndarray) -> list[float]:
    tp = int((pred & flip).sum())
    return [round(tp / max(int(pred.sum()), 1), 4), round(tp / max(int(flip.sum()), 1), 4)]


def _class_counts(flags: np.ndarray, y: np.ndarray) -> list[int]:
    return [int((flags & (y == c)).sum()) for c in (0, 1)]


def _top_by_margin(y: np.ndarray, pp: np.ndarray, counts: list[int]) -> np.ndarray:
    """Per given class, the `counts[c]` records whose other-class probability most exceeds the given one's."""
    out = np.zeros(len(y), dtype=bool)
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        margin = pp[idx, 1 - c] - pp[idx, c]
        out[idx[np.argsort(-margin, kind="stable")[: counts[c]]]] = True
    return out


def best_cut(y: np.ndarray, pp: np.ndarray, flip: np.ndarray, min_recall: float = 0.85) -> list[float]:
    """Highest precision any per-class flag count reaches with recall >= `min_recall`, records ranked per given class
    by margin (how `find_label_issues` ranks): an upper bound for every count rule on this ranking (it uses the
    truth to pick the counts, so it is not a detector)."""
    cum = []
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        margin = pp[idx, 1 - c] - pp[idx, c]
        cum.append(np.r_[0, np.cumsum(flip[idx[np.argsort(-margin, kind="stable")]])])
    tp = cum[0][:, None] + cum[1][None, :]
    k = np.arange(len(cum[0]))[:, None] + np.arange(len(cum[1]))[None, :]
    prec = np.where(tp >= min_recall * flip.sum(), tp / np.maximum(k, 1), 0.0)
    i = np.unravel_index(int(prec.argmax()), prec.shape)
    return [round(float(prec[i]), 4), round(float(tp[i] / max(int(flip.sum()), 1)), 4)]


def run_one(df: pd.DataFrame, flip: np.ndarray, fold_seed: int) -> dict:
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer

    from pipeline.quality.features import build_features, placeholder_types
    from pipeline.quality.issues import find_issues_iterated
    from pipeline.quality.oof import make_folds, oof_predict
    from pipeline.quality.stage import confident_learning_passes, label_issue_groups, model_factory

    q = bq._params().quality
    y = df["label"].astype(int).to_numpy()
    every = np.ones(len(y), dtype=bool)
    X = build_features(df, q.max_features, novelty=q.group_novelty).X
    groups = label_issue_groups(df, q)
    counts = np.bincount(y, minlength=2)
    make_model = model_factory(q, counts[1] / counts.sum(), int(counts.min()), fold_seed,
                               int(counts.sum()) * (q.k_folds - 1) // q.k_folds)[0]
    kw = dict(k=q.k_folds, seed=fold_seed, filter_by=q.filter_by, frac_noise=q.frac_noise)
    out: dict[str, list[float]] = {}
    t0 = time.perf_counter()

    std_pp = _standard_probs(df["text"], y, fold_seed)
    std_flags = find_label_issues(y, std_pp)
    out["standard"] = _pr(std_flags, flip)
    ours = find_issues_iterated(X, y, every, groups, make_model, passes=confident_learning_passes(q, len(y)),
                                posterior_check=q.posterior_check, **kw)
    one = find_issues_iterated(X, y, every, groups, make_model, passes=1, **kw)
    pp = ours.oof.pred_probs
    out["ours"] = _pr(ours.is_issue, flip)
    # the same final-round probabilities without the noise-posterior check (what the stage flagged before it)
    out["ours_without_posterior_check"] = _pr(find_label_issues(y, pp, filter_by=q.filter_by, frac_noise=q.frac_noise),
                                              flip)
    out["ours_1_round"] = _pr(one.is_issue, flip)
    cuts = {"standard": best_cut(y, std_pp, flip), "ours": best_cut(y, pp, flip),
            "ours_1_round": best_cut(y, one.oof.pred_probs, flip)}
    out["ours_ranking_at_standard_counts"] = _pr(_top_by_margin(y, pp, _class_counts(std_flags, y)), flip)
    out["standard_ranking_at_our_counts"] = _pr(_top_by_margin(y, std_pp, _class_counts(ours.is_issue, y)), flip)

    folds = make_folds(y, groups, q.k_folds, fold_seed)
    lr = oof_predict(X, y, every, folds, LBFGSLogReg).pred_probs
    out["lbfgs_lr_on_our_features"] = _pr(find_label_issues(y, lr), flip)
    texts = df["text"].fillna("").astype(str).map(placeholder_types)
    Xc = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2, max_features=25000,
                         dtype=np.float32).fit_transform(texts)
    char = oof_predict(Xc, y, every, folds, LBFGSLogReg, exclude=one.is_issue).pred_probs
    out["ours_plus_char_lr"] = _pr(find_label_issues(y, (pp + char) / 2), flip)

    k0, k1 = _class_counts(ours.is_issue, y)
    r01, r10 = k1 / max(counts[0] - k0 + k1, 1), k0 / max(counts[1] - k1 + k0, 1)
    for alpha in (1e-4, 3e-4):
        eta = oof_predict(X, y, every, folds, lambda: NoiseAwareLR(r01, r10, alpha=alpha)).pred_probs
        out[f"noise_aware_lr_a{alpha:g}"] = _pr(find_label_issues(y, eta), flip)
        out[f"noise_aware_lr_a{alpha:g}_plus_ours"] = _pr(find_label_issues(y, (eta + pp) / 2), flip)
        cuts[f"noise_aware_lr_a{alpha:g}"] = best_cut(y, eta, flip)

    truth = np.where(flip, 1 - y, y)
    clean = oof_predict(X, truth, every, folds, make_model).pred_probs
    out["clean_label_reference"] = _pr(find_label_issues(y, clean), flip)
    cuts["clean_label_reference"] = best_cut(y, clean, flip)
    return {"fold_seed": fold_seed, "seconds": round(time.perf_counter() - t0, 1), "flipped": int(flip.sum()),
            "records": len(y), "p_r": out, "best_cut_at_recall_085": cuts}


def _standard_probs(texts, y, seed: int) -> np.ndarray:
    """The standard recipe's out-of-fold probabilities (what `bench_quality.standard_recipe` feeds cleanlab)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                          LogisticRegression(max_iter=2000))
    return cross_val_predict(model, pd.Series(list(texts)), y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                             method="predict_proba")


def summarize(runs: list[dict]) -> dict:
    names = list(runs[0]["p_r"])
    mean = {k: [round(float(np.mean([r["p_r"][k][i] for r in runs])), 4) for i in (0, 1)] for k in names}
    cut = {k: [round(float(np.mean([r["best_cut_at_recall_085"][k][i] for r in runs])), 4) for i in (0, 1)]
           for k in runs[0]["best_cut_at_recall_085"]}
    sd = {k: [round(float(np.std([r["p_r"][k][i] for r in runs])), 4) for i in (0, 1)] for k in names}
    std_p, std_r = mean["standard"]
    meets = {k: bool(v[0] >= max(0.85, std_p) and v[1] >= max(0.85, std_r)) for k, v in mean.items()
             if k not in ("standard", "clean_label_reference")}
    return {"mean_precision_recall": mean, "sd_precision_recall": sd, "meets_issue_target": meets,
            "mean_best_cut_at_recall_085": cut}


def sms_runs() -> list[dict]:
    raw = pd.read_csv(bq.SHARED / "sms_spam" / "dev.csv")
    y0 = (raw["label"] == "spam").astype(int).to_numpy()
    runs = []
    for fold_seed, flip_seed in enumerate((42, 7, 1234)):
        rng = np.random.default_rng(flip_seed + 50)  # bench_quality's 5% flips for this seed
        flip = rng.random(len(y0)) < 0.05
        df = bq._records(raw["text"].astype(str), np.where(flip, 1 - y0, y0), "sms_spam")
        r = run_one(df, flip, fold_seed)
        r["flip_seed"] = flip_seed
        runs.append(r)
        _show("sms", r)
    return runs


def demo_runs(work: Path, n: int, seeds: int) -> list[dict]:
    from pipeline.quality.stage import load_records

    base, _, rec, flipped = bq.prepare_demo(work, n)
    df = load_records(base / "03" / "records.parquet")
    flip = pd.Series(flipped, index=rec["record_id"]).loc[df["record_id"]].to_numpy(bool)
    lab = df["label"].notna().to_numpy()
    df, flip = df[lab].reset_index(drop=True), flip[lab]
    runs = []
    for s in range(seeds):
        r = run_one(df, flip, s)
        runs.append(r)
        _show("demo", r)
    return runs


def _show(name: str, r: dict) -> None:
    cells = " ".join(f"{k}={v[0]:.3f}/{v[1]:.3f}" for k, v in r["p_r"].items())
    print(f"{name} fold seed {r['fold_seed']} ({r['seconds']} s): {cells}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="sms,demo")
    ap.add_argument("--demo-n", type=int, default=8000)
    ap.add_argument("--demo-seeds", type=int, default=5)
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({"benchmark": "label-issue study", "machine": {"cpus": os.cpu_count(),
                                                                   "python": platform.python_version()}})
    with tempfile.TemporaryDirectory(prefix="study_label_issues_", dir=args.work) as tmp:
        for s in [x.strip() for x in args.only.split(",") if x.strip()]:
            if s == "sms":
                runs = sms_runs()
            elif s == "demo":
                runs = demo_runs(Path(args.work) if args.work else Path(tmp), args.demo_n, args.demo_seeds)
            else:
                sys.exit(f"unknown section {s}")
            results[s] = {"runs": runs, **summarize(runs)}
            print(s, json.dumps(results[s]["mean_precision_recall"]), flush=True)
    results["command"] = "python -m benchmarks.study_label_issues " + " ".join(sys.argv[1:])
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
