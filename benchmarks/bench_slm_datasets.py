"""The fraud SLM on real data through the real CLI path, against the TF-IDF baseline (issue 21's acceptance).

    # from a scratch copy of the working tree (COMMON.md), third-party data read in place:
    FRAUDSLM_SHARED_DATA=/work/shared/data nice -n 10 .venv/bin/python -m benchmarks.bench_slm_datasets
    ... --datasets sms          # one data set (the cross-data-set part needs sms)
    ... --only cross            # the cross-data-set part alone (needs the sms run's folders)

Per data set (sms: ../shared/data/sms_spam/dev.csv, spam = 1; smishing: ../shared/data/smishing/dev.csv, spam or
smishing = 1; the raw files and source configs come from `benchmarks.bench_label_noise.prepare_raw`), the CLI runs
as subprocesses (`python -m pipeline.cli`): ingest -> anonymize -> quality -> split -> train -> compress, with the
repository's params.yaml unchanged except `paths.ground_truth` pointed nowhere (same settings for both data sets,
no per-data-set setting, no tuning loop). A finished stage (its `metrics.json` present) is not run again, so an
interrupted run resumes. Read from compress `metrics.json`: the chosen variant, its test PR-AUC / F1, the
baseline's, and `versus_baseline` (paired bootstrap, 95% interval of chosen minus baseline, validation and test).
Acceptance per data set: the interval's upper end reaches 0 or above for PR-AUC and for F1 on test (not
significantly below the baseline); validation is reported beside it.

Cross-data-set: the SMS run's `compressed/chosen` folder scores, through `fraudslm predict`, the smishing dev texts
that are not in SMS dev (exact match after whitespace normalisation). Beside it, the TF-IDF + LR baseline that
compress fits (`pipeline.train.compress.fit_baseline`, imported) is fitted on the SMS run's train split, its threshold
(max F1) and router band chosen on the SMS validation split as compress does, written as a model folder with the
chosen folder's anonymizer settings, and scored through the same `fraudslm predict` command: both see identical
anonymized text. Paired bootstrap of SLM minus baseline (PR-AUC and F1 at each one's shipped threshold). The predict
output is checked for text / PII (only id, score, label, route, error keys; no input text or digit run in it).

Results: benchmarks/results/slm_datasets.json (written after every step, atomically).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from benchmarks import bench_label_noise as bln

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "slm_datasets.json"
DATASETS = ("sms", "smishing")
STAGES = ("ingest", "anonymize", "quality", "split", "train", "compress")
OUTPUT_KEYS = frozenset({"id", "score", "label", "route", "error"})
ACCEPTANCE = ("per data set: the paired-bootstrap 95% interval of (chosen - baseline) on TEST reaches 0 or above "
              "(ci_high >= 0), for PR-AUC and for F1 (not significantly below the baseline); validation reported "
              "beside it. Cross-data-set: the same rule on the SLM-minus-baseline interval.")


# ------------------------------------------------------------------------------------------------ pure helpers
def norm_text(t: Any) -> str:
    """Whitespace-normalised text for the exact-match overlap test."""
    return " ".join(str(t).split())


def unseen(texts: Iterable[str], seen: Iterable[str]) -> list[int]:
    """Indices of `texts` whose normalised text is not among the normalised `seen` texts."""
    known = {norm_text(t) for t in seen}
    return [i for i, t in enumerate(texts) if norm_text(t) not in known]


def not_below(interval: Optional[dict]) -> Optional[bool]:
    """True when a paired-bootstrap interval of (a - b) reaches 0 or above (a not significantly below b)."""
    if not interval or interval.get("ci_high") is None:
        return None
    return bool(interval["ci_high"] >= 0)


def output_problems(rows: list[dict], ids: list, texts: list[str]) -> list[str]:
    """What in a predict output could carry text: keys beyond id/score/label/route/error, ids out of step, string
    values other than the known labels/routes/error reasons, an input text or a 7+ digit run of an input in it."""
    problems = []
    extra = sorted({k for r in rows for k in r} - OUTPUT_KEYS)
    if extra:
        problems.append(f"unexpected keys {extra}")
    if [r.get("id") for r in rows] != list(ids):
        problems.append("ids differ from the input's")
    for r in rows:
        if r.get("label") not in (None, "fraud", "legit") or r.get("route") not in ("auto", "review", "error"):
            problems.append("unexpected label/route value")
            break
        if r.get("error") is not None and not re.fullmatch(r"[a-z_:0-9 ]{1,60}", str(r["error"])):
            problems.append("error field is not a short reason code")
            break
    blob = json.dumps(rows)
    runs = {m for t in texts for m in re.findall(r"\d{7,}", t)}
    if any(m in blob for m in runs):
        problems.append("a digit run of an input text appears in the output")
    if any(len(t) >= 12 and t in blob for t in texts):
        problems.append("an input text appears in the output")
    return problems


# ------------------------------------------------------------------------------------------------- the CLI path
def run_cli(log: Path, *args: str) -> float:
    """`python -m pipeline.cli ARGS` from the repository root (bench_label_noise's environment); stderr to `log`;
    raise with its last lines on failure; return wall seconds."""
    cmd = [sys.executable, "-m", "pipeline.cli", *args]
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(cmd[1:])}\n")
        fh.flush()
        res = subprocess.run(cmd, cwd=ROOT, env=bln._env(), stdout=fh, stderr=subprocess.STDOUT, text=True)
    if res.returncode != 0:
        tail = " | ".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:])
        raise RuntimeError(f"fraudslm {args[0]} exited {res.returncode}: {tail}")
    return time.perf_counter() - t0


def pipeline_run(name: str, work: Path, params: Path) -> dict[str, Any]:
    """ingest -> ... -> compress for one data set; finished stages (metrics.json present) are kept."""
    d = work / name
    d.mkdir(parents=True, exist_ok=True)
    timings_path = d / "stage_seconds.json"
    seconds = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    raw = d / "raw"
    if not (d / "sources.yaml").exists():
        bln.prepare_raw(name, raw, quick=False)  # writes raw/<name>.csv and d/sources.yaml
    args = {
        "ingest": ("--sources", str(d / "sources.yaml"), "--out", str(d / "ingested"), "--set", f"paths.raw={raw}"),
        "anonymize": ("--in", str(d / "ingested"), "--out", str(d / "anonymized")),
        "quality": ("--in", str(d / "anonymized"), "--out", str(d / "quality")),
        "split": ("--in", str(d / "quality"), "--out", str(d / "splits")),
        "train": ("--in", str(d / "splits"), "--out", str(d / "lora")),
        "compress": ("--in", str(d / "lora"), "--splits", str(d / "splits"), "--out", str(d / "compressed")),
    }
    outs = {"ingest": "ingested", "anonymize": "anonymized", "quality": "quality", "split": "splits",
            "train": "lora", "compress": "compressed"}
    for stage in STAGES:
        if (d / outs[stage] / "metrics.json").exists() and stage in seconds:
            continue
        print(f"[slm-datasets] {name}: {stage}", file=sys.stderr, flush=True)
        seconds[stage] = round(run_cli(d / "cli.log", stage, *args[stage], "--params", str(params)), 1)
        timings_path.write_text(json.dumps(seconds, indent=1))
    return seconds


def _r(x: Any, nd: int = 4) -> Any:
    return None if x is None else round(float(x), nd)


def dataset_figures(name: str, work: Path, seconds: dict) -> dict[str, Any]:
    d = work / name
    cm = json.loads((d / "compressed" / "metrics.json").read_text())
    sm = json.loads((d / "splits" / "metrics.json").read_text())
    tm = json.loads((d / "lora" / "metrics.json").read_text())
    by = cm["variants_by_name"]
    chosen, base = by[cm["chosen"]], by[cm["baseline"]]
    vb = cm.get("versus_baseline") or {}
    fig = lambda r: {k: _r(r.get(k)) for k in ("pr_auc", "f1", "precision", "recall", "val_pr_auc", "val_f1",
                                                "threshold", "size_mb")}
    acc = {f"{split}_{m}_not_below_baseline": not_below(vb.get(split, {}).get(m))
           for split in ("test", "validation") for m in ("pr_auc", "f1")}
    acc["accepted"] = bool(acc["test_pr_auc_not_below_baseline"] and acc["test_f1_not_below_baseline"])
    fp32 = by.get("fp32", {})
    return {
        "chosen": cm["chosen"], "chosen_figures": fig(chosen), "baseline_figures": fig(base),
        "fp32_figures": fig(fp32) if fp32 else None,
        "versus_baseline": {s: vb.get(s) for s in ("validation", "test")},
        "acceptance": acc,
        "chosen_rule": {k: cm.get("chosen_rule", {}).get(k) for k in ("floor_met", "baseline_beats_all", "eligible",
                                                                     "significantly_below_fp32", "budget_only_choice")},
        "warnings": cm.get("warnings"),
        "router_test": {k: (cm.get("router") or {}).get("test", {}).get(k) for k in ("coverage", "auto_precision")},
        "n_test": cm.get("n_test"), "test_positives": _g(sm, "counts", "test", "fraud"),
        "n_validation": cm.get("n_validation"), "validation_positives": _g(sm, "counts", "validation", "fraud"),
        "split_counts": sm.get("counts"),
        "train": {k: tm.get(k) for k in ("epochs_run", "best_epoch", "learning_rate", "stopped_early",
                                          "rolled_back_epochs", "n_train", "val_pr_auc", "test_pr_auc") if k in tm}
        | {k: v for k, v in _timings(d / "lora").items() if k in ("training_time_s", "threads")},
        "stage_seconds": seconds,
        "variants": {n: {"val_pr_auc": _r(v.get("val_pr_auc")), "pr_auc": _r(v.get("pr_auc")), "f1": _r(v.get("f1")),
                         "size_mb": _r(v.get("size_mb"), 1)} for n, v in sorted(by.items())},
    }


def _timings(folder: Path) -> dict:
    p = folder / "timings.json"
    try:
        t = json.loads(p.read_text()) if p.exists() else {}
    except ValueError:
        return {}
    return t if isinstance(t, dict) else {}


def _g(d: Any, *keys: str) -> Any:
    for k in keys:
        d = d.get(k) if isinstance(d, dict) else None
    return d


# -------------------------------------------------------------------------------------------- cross-data-set
def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes so far (wall time on a shared machine is noise)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def cross_dataset(work: Path, params: Path) -> dict[str, Any]:
    import pandas as pd

    from pipeline.train.compress import BASELINE, fit_baseline
    from pipeline.train.data import load_splits
    from pipeline.train.metrics import (binary_metrics, choose_threshold, paired_bootstrap, paired_bootstrap_f1,
                                        router_band, router_metrics)
    from pipeline.train.predict import read_variant_meta, write_variant_meta

    sms_dir = work / "sms"
    chosen_dir = sms_dir / "compressed" / "chosen"
    if not (chosen_dir / "variant.json").exists():
        raise RuntimeError(f"{chosen_dir}: missing; run the sms data set first")
    c = work / "cross"
    c.mkdir(parents=True, exist_ok=True)
    sms = pd.read_csv(bln.SHARED / "sms_spam" / "dev.csv")
    smi = pd.read_csv(bln.SHARED / "smishing" / "dev.csv")
    texts_all = smi["TEXT"].astype(str).tolist()
    keep = unseen(texts_all, sms["text"].astype(str).tolist())
    texts = [texts_all[i] for i in keep]
    y = smi["label_normalized"].astype(str).str.lower().isin(["spam", "smishing"]).to_numpy()[keep].astype(int)
    ids = [int(i) for i in keep]
    inp = c / "texts.jsonl"
    tmp = inp.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(ids, texts)),
                   encoding="utf-8")
    os.replace(tmp, inp)

    # the baseline compress fits, on the SMS run's train split; threshold and router band on its validation split
    meta = read_variant_meta(chosen_dir)
    sd = load_splits(sms_dir / "splits")
    tr, va = sd["train"], sd["validation"]
    bdir = c / "baseline_model"
    bdir.mkdir(exist_ok=True)
    t0 = time.perf_counter()
    from pipeline.config import load_params

    prm = load_params(params)
    seed, n_boot = prm.seed, prm.compress.bootstrap  # as compress: its baseline's seed, its bootstrap resamples
    pipe, cval = fit_baseline(tr.texts, tr.labels, tr.weights, va.texts, va.labels, seed)
    p_va = pipe.predict_proba(va.texts)[:, 1]
    thr_b = choose_threshold(va.labels, p_va)
    band_b = router_band(va.labels, p_va, thr_b, float(meta["router"]["target_precision"]))
    with open(bdir / "model.pkl", "wb") as fh:
        pickle.dump(pipe, fh, protocol=pickle.HIGHEST_PROTOCOL)
    write_variant_meta(bdir, {k: meta[k] for k in ("labels", "positive_label", "max_length", "placeholder_handling",
                                                    "anonymizer", "data_version") if k in meta}
                       | {"name": BASELINE, "kind": "sklearn", "C": cval, "threshold": thr_b,
                          "router": {k: band_b[k] for k in ("low", "high", "target_precision")}})
    fit_s = time.perf_counter() - t0

    out: dict[str, Any] = {
        "trained_on": "sms (the SMS run's splits; SLM = its compress chosen/ folder)",
        "scored_on": "smishing dev texts not in SMS dev (exact match after whitespace normalisation)",
        "smishing_rows": len(texts_all), "removed_as_in_sms_dev": len(texts_all) - len(texts), "n": len(texts),
        "positives": int(y.sum()), "slm_variant": meta.get("name"), "baseline": BASELINE, "baseline_C": cval,
        "baseline_fit_s": round(fit_s, 1), "n_boot": n_boot,
    }
    scores: dict[str, np.ndarray] = {}
    thresholds: dict[str, float] = {}
    for label, model in (("slm", chosen_dir), ("baseline", bdir)):
        res = c / f"scores_{label}.jsonl"
        cpu0 = _children_cpu()
        secs = run_cli(c / "cli.log", "predict", "--model", str(model), "--in", str(inp), "--out", str(res),
                       "--params", str(params))
        cpu = _children_cpu() - cpu0
        rows = read_jsonl(res)
        problems = output_problems(rows, ids, texts)
        vm = read_variant_meta(model)
        thr = float(vm["threshold"])
        ok = np.array([r.get("score") is not None for r in rows])
        p = np.array([r["score"] if r.get("score") is not None else np.nan for r in rows], dtype=float)
        pred_from_labels = np.array([r.get("label") == "fraud" for r in rows])
        m = binary_metrics(y[ok], p[ok], thr)
        routes = np.array([r.get("route") for r in rows])
        auto = routes == "auto"
        correct_auto = ((p >= thr) == (y == 1)) & auto
        rm = router_metrics(y[ok], p[ok], vm.get("router") or {})
        out[label] = {
            "folder": str(model.relative_to(work)), "kind": vm.get("kind"), "threshold": _r(thr, 6),
            "router_band": vm.get("router"), "predict_wall_s": round(secs, 1),
            "predict_cpu_s": round(cpu, 1),
            "scored": int(ok.sum()), "quarantined": int((~ok).sum()),
            "pr_auc": _r(m["pr_auc"]), "roc_auc": _r(m["roc_auc"]), "f1": _r(m["f1"]),
            "precision": _r(m["precision"]), "recall": _r(m["recall"]),
            "recall_at_1pct_fpr": _r(m["recall_at_1pct_fpr"]),
            "labels_agree_with_threshold": bool(np.array_equal(pred_from_labels[ok], p[ok] >= thr)),
            "router": {"coverage": _r(rm["coverage"]), "auto_precision": _r(rm["auto_precision"]),
                       "auto_fraud": rm["auto_fraud"], "auto_legit": rm["auto_legit"], "review": rm["review"],
                       "routes_from_predict": {"auto": int(auto.sum()), "review": int((routes == "review").sum()),
                                               "error": int((routes == "error").sum())},
                       "auto_precision_from_predict": _r(correct_auto.sum() / auto.sum()) if auto.any() else None},
            "no_text_in_output": not problems, "output_problems": problems,
        }
        scores[label], thresholds[label] = p, thr
    both = ~np.isnan(scores["slm"]) & ~np.isnan(scores["baseline"])
    diff = {"pr_auc": paired_bootstrap(y[both], scores["slm"][both], scores["baseline"][both], n_boot, seed),
            "f1": paired_bootstrap_f1(y[both], scores["slm"][both], thresholds["slm"], scores["baseline"][both],
                                      thresholds["baseline"], n_boot, seed)}
    out["slm_minus_baseline"] = {"n": int(both.sum()), **diff}
    out["acceptance"] = {"pr_auc_not_below_baseline": not_below(diff["pr_auc"]),
                         "f1_not_below_baseline": not_below(diff["f1"]),
                         "no_text_in_predict_output": bool(out["slm"]["no_text_in_output"]
                                                           and out["baseline"]["no_text_in_output"])}
    return out


# ------------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--only", default="datasets,cross", help="sections: datasets,cross")
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "fraudslm_slm_datasets")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    sections = set(args.only.split(","))
    names = [n for n in args.datasets.split(",") if n]
    args.work.mkdir(parents=True, exist_ok=True)

    import yaml

    pdata = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")) or {}
    pdata.setdefault("paths", {})["ground_truth"] = str(args.work / "no_ground_truth")
    params = args.work / "params.yaml"
    params.write_text(yaml.safe_dump(pdata, sort_keys=False), encoding="utf-8")

    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    payload: dict[str, Any] = {
        "benchmark": "bench_slm_datasets", "issue": 21,
        "command": "FRAUDSLM_SHARED_DATA=/path/to/shared/data nice -n 10 python -m benchmarks.bench_slm_datasets "
                   "--work DIR (run from a scratch copy of the tree; about 50 minutes on 2 shared cores)",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "note": "2 cores shared with other jobs; stage seconds are wall time"},
        "path": "python -m pipeline.cli ingest -> anonymize -> quality -> split -> train -> compress (subprocesses), "
                "repository params.yaml with paths.ground_truth pointed nowhere; same settings for every data set",
        "data": {"sms": "../shared/data/sms_spam/dev.csv, label spam = 1",
                 "smishing": "../shared/data/smishing/dev.csv, label_normalized spam or smishing = 1"},
        "acceptance_rule": ACCEPTANCE,
        "datasets": previous.get("datasets", {}), "cross_dataset": previous.get("cross_dataset"),
    }
    if "datasets" in sections:
        for name in names:
            try:
                secs = pipeline_run(name, args.work, params)
                payload["datasets"][name] = dataset_figures(name, args.work, secs)
            except Exception as exc:  # noqa: BLE001 - recorded, the other data set still runs
                payload["datasets"][name] = {"error": str(exc)[-500:]}
                print(f"[slm-datasets] {name} failed: {exc}", file=sys.stderr, flush=True)
            bln.write_results(args.out, _summarize(payload))
            r = payload["datasets"][name]
            print(f"[slm-datasets] {name}: {json.dumps(r.get('acceptance') or r.get('error'))}", file=sys.stderr,
                  flush=True)
    if "cross" in sections:
        try:
            payload["cross_dataset"] = cross_dataset(args.work, params)
        except Exception as exc:  # noqa: BLE001
            payload["cross_dataset"] = {"error": str(exc)[-500:]}
            print(f"[slm-datasets] cross failed: {exc}", file=sys.stderr, flush=True)
    bln.write_results(args.out, _summarize(payload))
    print(json.dumps(payload["summary"], indent=1))
    return 0


def _summarize(payload: dict) -> dict:
    acc = {n: (r.get("acceptance") or {}).get("accepted") for n, r in payload["datasets"].items()}
    cross = payload.get("cross_dataset") or {}
    payload["summary"] = {"datasets_accepted": acc,
                          "all_datasets_accepted": all(acc.values()) if acc and None not in acc.values() else None,
                          "cross_dataset": cross.get("acceptance")}
    return payload


if __name__ == "__main__":
    sys.exit(main())
