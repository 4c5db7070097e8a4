"""Quality benchmark: label-issue detection and speed of `fraudslm quality`, against the standard recipe measured in
the same run (character TF-IDF + logistic regression, 5-fold out-of-fold probabilities, `cleanlab.filter.
find_label_issues` with its defaults).

    .venv/bin/python -m benchmarks.bench_quality                 # everything (about 15-25 min on 2 busy cores)
    .venv/bin/python -m benchmarks.bench_quality --only sms,smishing

Sections (results merged into benchmarks/results/quality.json):
- `sms`: ../shared/data/sms_spam/dev.csv with labels flipped at random (seeded) at 1, 2, 5, 10, 20%; the 5% point
  is repeated over 10 flip seeds (one record moves precision by ~0.6 points, so 3 seeds cannot separate detectors
  a point apart; the first 3 seeds, 42 / 7 / 1234, are also averaged on their own, as earlier runs reported).
  Precision / recall of the flagged set against the flips.
- `demo`: the project's demo (n=8000, flip rate 5%) through demo-data -> ingest -> anonymize -> quality; precision /
  recall against ground_truth/labels.csv (the standard recipe runs on the same anonymized texts).
- `smishing`: ../shared/data/smishing/dev.csv (spam + smishing = positive; finer label kept as `label_raw`): texts
  carrying conflicting labels surfaced by the stage.
- `card`: ../shared/data/card_transactions (exact labels, 0.89% fraud) rendered as text; every flag is a false
  positive, so the flag rate is the false-positive control.
- `speed`: the full stage (defaults: 2 rounds, Datalab outliers/near-duplicates, shortcut check) on 100,000 demo-like
  anonymized records (true demo labels, then 5% flipped by the benchmark), and the standard recipe on the same
  records.
Every data set is turned into anonymized-stage records (record_id, source, text, label, group_id, ...) plus a passing
gate.json, then `run_quality` runs exactly as the CLI would.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "quality.json"
RATES = (0.01, 0.02, 0.05, 0.10, 0.20)
SMS_SEEDS = (42, 7, 1234, 1, 2, 3, 4, 5, 6, 8)  # flip seeds at 5% (42 is the curve's seed)
os.environ.setdefault("FRAUDSLM_PSEUDONYM_KEY", "bench-quality-key-0123456789abcdef")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# ------------------------------------------------------------------------------------------------------- helpers
def _rid(source: str, key: str) -> str:
    return hashlib.sha256(f"{source}\x1f{key}".encode()).hexdigest()[:16]


def _records(texts, labels, source: str, groups=None, extra: dict | None = None) -> pd.DataFrame:
    n = len(texts)
    keys = [f"{i}" for i in range(n)]
    rid = [_rid(source, k) for k in keys]
    df = pd.DataFrame({
        "record_id": rid, "source": source, "source_key": keys, "text": list(texts),
        "label": pd.array(np.asarray(labels), dtype="Int8"),
        "group_id": list(groups) if groups is not None else [None] * n,
        "dup_cluster": rid, "label_conflict": False,
    })
    for k, v in (extra or {}).items():
        df[k] = v
    return df


def _write_input(df: pd.DataFrame, folder: Path) -> Path:
    from pipeline.quality.synthetic import write_anonymized

    write_anonymized(df, folder, gate={"passed": True, "residual": {}, "checked_records": len(df),
                                       "key_fingerprint": "benchmark"})
    return folder


def _params(**over):
    from pipeline.config import load_params

    base = {"paths.ground_truth": "/nonexistent-ground-truth"}
    base.update(over)
    return load_params(ROOT / "params.yaml", base)


def _pr(pred: np.ndarray, truth: np.ndarray) -> dict:
    tp = int((pred & truth).sum())
    return {"flagged": int(pred.sum()), "true": int(truth.sum()), "precision": round(tp / max(pred.sum(), 1), 4),
            "recall": round(tp / max(truth.sum(), 1), 4)}


def standard_recipe(texts, labels, seed: int = 0) -> tuple[np.ndarray, float]:
    """The usual recipe: char TF-IDF + logistic regression, 5-fold OOF probabilities, find_label_issues defaults."""
    from cleanlab.filter import find_label_issues
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    t0 = time.perf_counter()
    y = np.asarray(labels).astype(int)
    model = make_pipeline(TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                          LogisticRegression(max_iter=2000))
    pp = cross_val_predict(model, pd.Series(list(texts)), y, cv=StratifiedKFold(5, shuffle=True, random_state=seed),
                           method="predict_proba")
    return find_label_issues(y, pp), time.perf_counter() - t0


def ours(df: pd.DataFrame, work: Path, name: str, **over) -> tuple[pd.DataFrame, dict, float]:
    from pipeline.quality import run_quality

    inp = _write_input(df, work / f"{name}_in")
    t0 = time.perf_counter()
    m = run_quality(inp, work / f"{name}_out", _params(**over))
    dt = time.perf_counter() - t0
    scores = pd.read_parquet(work / f"{name}_out" / "scores.parquet")
    return scores, m, dt


def _flags_in_order(scores: pd.DataFrame, df: pd.DataFrame) -> np.ndarray:
    return scores.set_index("record_id").loc[df["record_id"], "is_label_issue"].to_numpy(bool)


# ------------------------------------------------------------------------------------------------------- sections
def bench_sms(work: Path) -> dict:
    raw = pd.read_csv(SHARED / "sms_spam" / "dev.csv")
    y0 = (raw["label"] == "spam").astype(int).to_numpy()
    curve, repeats = [], []
    runs = [(r, 42) for r in RATES] + [(0.05, s) for s in SMS_SEEDS[1:]]
    for rate, seed in runs:
        rng = np.random.default_rng(seed + int(rate * 1000))
        flip = rng.random(len(y0)) < rate
        y = np.where(flip, 1 - y0, y0)
        df = _records(raw["text"].astype(str), y, "sms_spam")
        scores, m, dt = ours(df, work, f"sms_{rate}_{seed}")
        std, dt_std = standard_recipe(df["text"], y, seed)
        row = {"flip_rate": rate, "seed": seed, "ours": {**_pr(_flags_in_order(scores, df), flip), "seconds": round(dt, 1)},
               "standard": {**_pr(std, flip), "seconds": round(dt_std, 1)}}
        (curve if seed == 42 else repeats).append(row)
        print(f"sms {rate:.2f} seed {seed}: ours P {row['ours']['precision']:.3f} R {row['ours']['recall']:.3f} | "
              f"standard P {row['standard']['precision']:.3f} R {row['standard']['recall']:.3f}", flush=True)
    at5 = [r for r in curve + repeats if r["flip_rate"] == 0.05]

    def mean_of(rows):
        return {k: {m: round(float(np.mean([r[k][m] for r in rows])), 4) for m in ("precision", "recall")}
                for k in ("ours", "standard")}

    mean = mean_of(at5)
    both = sum(bool(r["ours"]["precision"] >= r["standard"]["precision"] and r["ours"]["recall"] >= r["standard"]["recall"])
               for r in at5)
    return {"curve": curve, "repeats_at_5pct": repeats, "mean_at_5pct": mean, "seeds_at_5pct": list(SMS_SEEDS),
            "mean_at_5pct_seeds_42_7_1234": mean_of([r for r in at5 if r["seed"] in (42, 7, 1234)]),
            "runs_at_5pct_both_at_least_standard": both,
            "ratio_recall_at_5pct": round(mean["ours"]["recall"] / mean["standard"]["recall"], 3),
            "ratio_precision_at_5pct": round(mean["ours"]["precision"] / mean["standard"]["precision"], 3)}


def prepare_demo(work: Path, n: int):
    """The project's demo (seed 42, flip rate 5%) through demo-data -> ingest -> anonymize in `work/demo` (reused when
    already there). Returns (demo folder, params, anonymized records, flipped mask aligned with those records)."""
    from pipeline.anonymize import run_anonymize
    from pipeline.config import DemoParams
    from pipeline.demo import generate
    from pipeline.ingest import run_ingest

    base = work / "demo"
    truth = base / "ground_truth"
    p = _params(**{"paths.raw": str(base / "01_raw"), "paths.ground_truth": str(truth)})
    if not (base / "03" / "gate.json").exists():  # reuse a prepared demo (same seed and size) when present
        generate(out=base / "01_raw", truth_out=truth, n=n, seed=42, params=DemoParams(flip_rate=0.05))
        run_ingest(ROOT / "schemas" / "sources.yaml", base / "02", p, ground_truth=truth, repo_root=ROOT)
        run_anonymize(base / "02", base / "03", p, ground_truth=truth)
    rec = pd.read_parquet(base / "03" / "records.parquet")
    lab = pd.read_csv(truth / "labels.csv", dtype=str)
    lab["record_id"] = [_rid(s, k) for s, k in zip(lab["source"], lab["key"])]
    flipped = lab.set_index("record_id").loc[rec["record_id"], "flipped"].eq("1").to_numpy()
    return base, p, rec, flipped


def bench_demo(work: Path, n: int) -> dict:
    from pipeline.quality import run_quality

    base, p, rec, flipped = prepare_demo(work, n)
    t0 = time.perf_counter()
    m = run_quality(base / "03", base / "04", p)
    dt = time.perf_counter() - t0
    std, dt_std = standard_recipe(rec["text"], rec["label"].astype(int))
    res = {"n_generated": n, "records": len(rec), "flip_rate": 0.05,
           "ours": {**{k: m["ground_truth"][k] for k in ("flagged", "true", "precision", "recall")}, "seconds": round(dt, 1)},
           "standard": {**_pr(std, flipped), "seconds": round(dt_std, 1)},
           "shortcut_auc": m["shortcut"]["auc"], "label_conflicts": m["label_conflicts"]}
    print(f"demo: ours P {res['ours']['precision']:.3f} R {res['ours']['recall']:.3f} | standard "
          f"P {res['standard']['precision']:.3f} R {res['standard']['recall']:.3f}", flush=True)
    return res


def bench_smishing(work: Path) -> dict:
    from pipeline.quality.issues import normalize_text

    raw = pd.read_csv(SHARED / "smishing" / "dev.csv")
    norm = raw["TEXT"].astype(str).map(normalize_text)
    nun = raw.groupby(norm)["label_normalized"].nunique()
    expected = set(nun[nun > 1].index)
    df = _records(raw["TEXT"].astype(str), (raw["label_normalized"] != "ham").astype(int), "smishing",
                  extra={"label_raw": raw["label_normalized"].to_numpy()})
    scores, m, dt = ours(df, work, "smishing")
    s = scores.set_index("record_id").loc[df["record_id"]]
    surfaced = set(norm[s["label_conflict"].to_numpy()])
    res = {"conflicting_texts_expected": len(expected), "conflicting_texts_surfaced": len(expected & surfaced),
           "conflicting_rows_surfaced": int(s["label_conflict"].sum()),
           "label_issues": m["label_issues"]["count"], "seconds": round(dt, 1)}
    print(f"smishing: {res['conflicting_texts_surfaced']}/{res['conflicting_texts_expected']} conflicting texts", flush=True)
    return res


def bench_card(work: Path, n: int) -> dict:
    raw = pd.read_csv(SHARED / "card_transactions" / "transactions.csv", nrows=n)
    t = pd.to_datetime(raw["TX_DATETIME"])
    texts = [f"card payment of {a:.2f} at terminal T{tid} by customer C{cid} at hour {h} on day {d}"
             for a, tid, cid, h, d in zip(raw["TX_AMOUNT"], raw["TERMINAL_ID"], raw["CUSTOMER_ID"], t.dt.hour,
                                          raw["TX_TIME_DAYS"])]
    df = _records(texts, raw["TX_FRAUD"].astype(int), "card_transactions",
                  groups=[f"C{c}" for c in raw["CUSTOMER_ID"]],
                  extra={"amount": raw["TX_AMOUNT"].to_numpy(), "event_time": t.dt.tz_localize("UTC")})
    scores, m, dt = ours(df, work, "card")
    flagged = scores["is_label_issue"].to_numpy(bool)
    y = df["label"].astype(int).to_numpy()
    flags = _flags_in_order(scores, df)
    std, dt_std = standard_recipe(df["text"], y)
    res = {"records": len(df), "prevalence": round(float(y.mean()), 5), "model": m["label_issues"]["model"],
           "ours": {"flagged": int(flagged.sum()), "flag_rate": round(float(flagged.mean()), 5),
                    "flagged_fraud": int((flags & (y == 1)).sum()), "seconds": round(dt, 1)},
           "standard": {"flagged": int(std.sum()), "flag_rate": round(float(std.mean()), 5), "seconds": round(dt_std, 1)},
           "note": "labels are exact by construction: every flag is a false positive"}
    print(f"card: ours flag rate {res['ours']['flag_rate']:.4f} | standard {res['standard']['flag_rate']:.4f}", flush=True)
    return res


def _demo_like(n: int, seed: int, source_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """n anonymized-like records resampled from the anonymized demo (each text perturbed by dropping ~10% of its
    words, so every record is distinct), 5% flips, 30% as many customers as records."""
    base = pd.read_parquet(source_dir / "records.parquet")
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(base), size=n)
    texts = []
    for t in base["text"].to_numpy()[pick]:
        w = t.split(" ")
        keep = rng.random(len(w)) > 0.1
        texts.append(" ".join(x for x, k in zip(w, keep) if k) or t)
    y_base = base["label"].astype(int).to_numpy()
    truth = source_dir.parent / "ground_truth" / "labels.csv"
    if truth.is_file():  # start from the true labels, so the benchmark's own flips are the only noise
        lab = pd.read_csv(truth, dtype=str)
        true = pd.Series(lab["true_label"].astype(int).to_numpy(),
                         index=[_rid(s, k) for s, k in zip(lab["source"], lab["key"])])
        y_base = true.reindex(base["record_id"]).fillna(pd.Series(y_base, index=base["record_id"])).astype(int).to_numpy()
    y0 = y_base[pick]
    flip = rng.random(n) < 0.05
    extra = {c: base[c].to_numpy()[pick] for c in ("amount", "currency", "channel", "merchant_category", "tx_type",
                                                   "card_network", "iban_country", "email_domain_class", "n_entities")
             if c in base.columns}
    df = _records(texts, np.where(flip, 1 - y0, y0), "demo_like", groups=[f"G{g}" for g in rng.integers(0, int(n * 0.3), n)],
                  extra=extra)
    df["source"] = base["source"].to_numpy()[pick]
    return df, flip


def bench_speed(work: Path, n: int, source: Path | None = None) -> dict:
    src = source or work / "demo" / "03"
    if not (src / "records.parquet").exists():
        bench_demo(work, 3000)
    df, flip = _demo_like(n, 0, src)
    scores, m, dt = ours(df, work, "speed")
    std, dt_std = standard_recipe(df["text"], df["label"].astype(int))
    res = {"records": n, "seconds": round(dt, 1), "records_per_s": round(n / dt, 1),
           "target_seconds": 300, "meets_target": dt < 300,
           "standard_recipe_seconds": round(dt_std, 1), "ratio_standard_over_ours": round(dt_std / dt, 2),
           "ours": _pr(_flags_in_order(scores, df), flip), "standard": _pr(std, flip),
           "rounds": m["label_issues"]["rounds"]}
    print(f"speed: {n} records in {dt:.1f}s (standard recipe {dt_std:.1f}s)", flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="sms,demo,smishing,card,speed")
    ap.add_argument("--demo-n", type=int, default=8000)
    ap.add_argument("--card-n", type=int, default=60000)
    ap.add_argument("--speed-n", type=int, default=100_000)
    ap.add_argument("--speed-source", default=None, help="anonymized records folder to resample (default: the demo)")
    ap.add_argument("--work", default=None, help="scratch folder (default: a temp folder)")
    args = ap.parse_args()
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update({"benchmark": "quality", "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                                        "load_avg_1m": round(os.getloadavg()[0], 2)}})
    with tempfile.TemporaryDirectory(prefix="bench_quality_", dir=args.work) as tmp:
        work = Path(tmp)
        for s in sections:
            t0 = time.perf_counter()
            if s == "sms":
                results["sms_spam"] = bench_sms(work)
            elif s == "demo":
                results["demo"] = bench_demo(work, args.demo_n)
            elif s == "smishing":
                results["smishing"] = bench_smishing(work)
            elif s == "card":
                results["card_transactions"] = bench_card(work, args.card_n)
            elif s == "speed":
                results["speed"] = bench_speed(work, args.speed_n, Path(args.speed_source) if args.speed_source else None)
            else:
                sys.exit(f"unknown section {s}")
            results.setdefault("section_seconds", {})[s] = round(time.perf_counter() - t0, 1)
    results["command"] = "python -m benchmarks.bench_quality " + " ".join(sys.argv[1:])
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
