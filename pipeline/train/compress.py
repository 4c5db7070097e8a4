"""`fraudslm compress`: shrink the merged model and measure every variant the same way.

Variants (each a self-contained folder under `out/variants/`, loaded back from disk before it is measured):
`fp32` (the merged model, reference), `int8` (torch dynamic int8 Linear + int8 embeddings), `pruned` (global L1
magnitude pruning, dense storage) and `pruned_int8`, `distilled` (a shallower student trained on the teacher's
logits) and `distilled_int8`, `onnx_fp32` and `onnx_int8` (onnxruntime dynamic quantization), plus the
`baseline_tfidf_lr` row (word + char TF-IDF and logistic regression on the same splits).

For each: size on disk (the whole folder needed to run it: weights, config, tokenizer), parameters, batch-1 latency
p50/p95 and batch-32 throughput on CPU (same process, same threads, warm-up first, rounds interleaved across
variants so background load hits all alike; tokenisation included), and on the untouched test split PR-AUC, F1 at
the threshold chosen on validation, recall at 1% FPR. The deployable variant (`chosen`) is the smallest (then
fastest) one whose test PR-AUC drop against fp32 stays within `compress.pr_auc_budget` and, with
`compress.baseline_floor`, that also reaches the TF-IDF baseline's PR-AUC (when one does); it is copied to
`out/chosen/`.
"""

from __future__ import annotations

import logging
import math
import pickle
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from pipeline.config import Params
from pipeline.errors import ConfigError, GateError
from pipeline.contracts import CompressMetrics, write_metrics
from pipeline.io import atomic_dir, read_json, write_text
from pipeline.train import model as M
from pipeline.train.artifacts import compression_table, plot_size_vs_pr_auc, write_csv
from pipeline.train.data import check_upstream_gate, data_version, ledger_for, load_splits, write_ledger_or_fail
from pipeline.train.metrics import (
    binary_metrics,
    bootstrap_indices,
    choose_threshold,
    paired_bootstrap,
    paired_bootstrap_f1,
    router_band,
    router_metrics,
    segment_metrics,
    segment_values,
)
from pipeline.train.resources import resolve_threads
from pipeline.train.textproc import PLACEHOLDER_HANDLING
from pipeline.train.predict import (
    INT8_FILE,
    OnnxPredictor,
    load_variant,
    quantize_int8,
    read_variant_meta,
    write_variant_meta,
)
from pipeline.train.trainer import PROVENANCE_FILE

REFERENCE = "fp32"
# timing figures (metrics.json stays deterministic: they go to timings.json through the variants[] list)
_VOLATILE_ROW = ("name", "latency_p50_ms", "latency_p95_ms", "speedup_b1", "throughput_b32", "build_s",
                 "cpu_s_per_1000")
BASELINE = "baseline_tfidf_lr"


def echo(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"compress: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# writers, one per variant kind


def _save_hf(model, tokenizer, folder: Path, meta: dict[str, Any]) -> None:
    M.save_classifier(model, folder)
    tokenizer.save_pretrained(folder)
    write_variant_meta(folder, {**meta, "kind": "hf"})


def _save_int8(qmodel, config, tokenizer, folder: Path, meta: dict[str, Any]) -> None:
    import torch

    M.save_classifier_config(config, folder)
    tokenizer.save_pretrained(folder)
    with M.quiet_transformers():
        torch.save(qmodel.state_dict(), folder / INT8_FILE)
    write_variant_meta(folder, {**meta, "kind": "torch_int8",
                                "quantization": "torch.ao dynamic int8: Linear per-channel qint8 weights, "
                                                "Embedding per-row quint8 weight-only"})


def export_onnx(model, tokenizer, folder: Path, opset: int, meta: dict[str, Any], probe: dict[str, Any]) -> None:
    """TorchScript-based exporter (dynamo=False: the dynamo exporter needs onnxscript, not a dependency), dynamic
    batch and sequence axes; inputs input_ids + attention_mask."""
    import torch

    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (probe["input_ids"], probe["attention_mask"]), str(folder / "model.onnx"), dynamo=False,
            opset_version=opset, input_names=["input_ids", "attention_mask"], output_names=["logits"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
                          "logits": {0: "batch"}},
            do_constant_folding=True)
    tokenizer.save_pretrained(folder)
    write_variant_meta(folder, {**meta, "kind": "onnx", "opset": opset, "precision": "fp32"})


def quantize_onnx(src: Path, folder: Path, tokenizer, meta: dict[str, Any]) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # onnxruntime logs a pre-processing hint through the root logger
    try:
        quantize_dynamic(str(src / "model.onnx"), str(folder / "model.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
    finally:
        root.setLevel(level)
    tokenizer.save_pretrained(folder)
    write_variant_meta(folder, {**meta, "kind": "onnx", "precision": "int8",
                                "quantization": "onnxruntime quantize_dynamic QInt8 per channel (MatMul + Gather)"})


def fit_baseline(train_texts: list[str], y: np.ndarray, weights: Optional[np.ndarray], val_texts: list[str],
                 y_val: np.ndarray, seed: int):
    """Word (1-2) + char_wb (2-5) TF-IDF and logistic regression; C picked on validation PR-AUC from {1, 4, 16}."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import FeatureUnion, Pipeline

    min_df = 2 if len(train_texts) >= 500 else 1
    features = FeatureUnion([
        ("word", TfidfVectorizer(ngram_range=(1, 2), min_df=min_df, sublinear_tf=True, max_features=50_000)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), min_df=min_df, sublinear_tf=True,
                                 max_features=100_000)),
    ])
    x = features.fit_transform(train_texts)
    xv = features.transform(val_texts)
    fit_kw = {"sample_weight": weights} if weights is not None else {}
    cw = None if weights is not None else "balanced"
    best = None
    for c in (1.0, 4.0, 16.0):
        lr = LogisticRegression(C=c, class_weight=cw, max_iter=3000, random_state=seed).fit(x, y, **fit_kw)
        ap = average_precision_score(y_val, lr.predict_proba(xv)[:, 1])
        if best is None or ap > best[0] + 1e-9:
            best = (ap, c, lr)
    return Pipeline([("features", features), ("lr", best[2])]), best[1]


# ---------------------------------------------------------------------------------------------------------------
# measurement


def measure_latency(predictors: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], runs: int,
                    rounds: int = 5, batch: int = 32) -> dict[str, dict[str, float]]:
    """Batch-1 latency p50/p95 (ms) over `runs` calls and batch-`batch` throughput (texts/s), interleaving
    `rounds` rounds across variants so that background load is spread evenly. Same texts for every variant."""
    if not texts:
        raise ConfigError("compress: the test split is empty; nothing to time")
    rounds = max(1, min(rounds, runs))
    per_round = math.ceil(runs / rounds)
    b1: dict[str, list[float]] = {n: [] for n in predictors}
    bt: dict[str, list[float]] = {n: [] for n in predictors}
    big = [texts[i % len(texts)] for i in range(batch * rounds)]
    for fn in predictors.values():  # warm-up
        for i in range(3):
            fn([texts[i % len(texts)]])
        fn(big[:batch])
    k = 0
    for r in range(rounds):
        start = k
        for name, fn in predictors.items():
            k = start
            for _ in range(per_round):
                t = texts[k % len(texts)]
                k += 1
                t0 = time.perf_counter()
                fn([t])
                b1[name].append(time.perf_counter() - t0)
            chunk = big[r * batch: (r + 1) * batch]
            t0 = time.perf_counter()
            fn(chunk)
            bt[name].append(time.perf_counter() - t0)
    out = {}
    for name in predictors:
        ts = np.asarray(b1[name][:runs]) * 1000
        out[name] = {"latency_p50_ms": float(np.percentile(ts, 50)), "latency_p95_ms": float(np.percentile(ts, 95)),
                     "throughput_b32": float(batch * len(bt[name]) / sum(bt[name]))}
    return out


def choose_variant(variants: list[dict[str, Any]], budget: float, baseline_floor: bool = False,
                   metric: str = "val_pr_auc") -> str:
    return choose_variant_explained(variants, budget, baseline_floor, metric)["chosen"]


def choose_variant_explained(variants: list[dict[str, Any]], budget: float, baseline_floor: bool,
                             metric: str = "val_pr_auc") -> dict[str, Any]:
    """The variant to ship, from VALIDATION figures only (`metric`; the test split is never looked at):

    1. eligible: SLM variants whose PR-AUC is within `budget` of fp32's and not significantly below it
       (`significant_below_fp32`, a paired bootstrap on validation); fp32 itself always is;
    2. with `baseline_floor`: the smallest eligible variant that reaches the TF-IDF baseline's PR-AUC; when none
       does (`floor_met: false`), the eligible variant with the best PR-AUC (never simply the smallest);
       without it: the smallest eligible variant.
    `baseline_beats_all` says when the baseline's PR-AUC is above every SLM variant's."""

    def auc(v: dict[str, Any]) -> Optional[float]:
        x = v.get(metric, v.get("pr_auc"))
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)

    ref = next(v for v in variants if v["name"] == REFERENCE)
    slm = [v for v in variants if v["kind"] != "baseline" and auc(v) is not None]
    ref_auc = auc(ref)
    ok = [v for v in slm if v["name"] == REFERENCE or (
        ref_auc is not None and ref_auc - auc(v) <= budget + 1e-12 and not v.get("significant_below_fp32"))]

    def smallest(vs: list[dict[str, Any]]) -> str:
        return min(vs, key=lambda v: (round(v["size_mb"], 3), v.get("latency_p50_ms") or 0.0, v["name"]))["name"]

    def best(vs: list[dict[str, Any]]) -> str:
        return min(vs, key=lambda v: (-round(auc(v), 6), round(v["size_mb"], 3), v["name"]))["name"]

    budget_only = smallest(ok) if ok else REFERENCE
    out: dict[str, Any] = {"chosen": budget_only, "chosen_on": metric, "pr_auc_budget": budget,
                           "baseline_floor": baseline_floor, "budget_only_choice": budget_only,
                           "eligible": sorted(v["name"] for v in ok),
                           "significantly_below_fp32": sorted(v["name"] for v in slm if v.get("significant_below_fp32"))}
    base = next((v for v in variants if v["kind"] == "baseline" and auc(v) is not None), None)
    if base is not None:
        floor = [v for v in ok if auc(v) >= auc(base) - 1e-12]
        out["baseline_pr_auc"] = auc(base)
        out["floor_met"] = bool(floor)
        out["baseline_beats_all"] = bool(slm) and all(auc(v) < auc(base) - 1e-12 for v in slm)
        if baseline_floor:
            out["chosen"] = smallest(floor) if floor else (best(ok) if ok else REFERENCE)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the stage


def run_compress(inp: Path, splits: Path, out: Path, params: Params) -> dict[str, Any]:
    with M.known_warnings_silenced():
        return _run_compress(inp, splits, out, params)


def _run_compress(inp: Path, splits: Path, out: Path, params: Params) -> dict[str, Any]:
    import torch
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    inp, splits, out = Path(inp), Path(splits), Path(out)
    cp = params.compress
    gate = check_upstream_gate(splits, params)
    merged_dir = inp / "merged"
    prov_path = merged_dir / PROVENANCE_FILE
    if not prov_path.is_file():
        raise ConfigError(f"{prov_path}: missing; --in must be a `fraudslm train` output folder")
    prov = read_json(prov_path)
    dv = data_version(splits)
    trained_on = prov.get("data_version", {}).get("dataset_sha256")
    if trained_on != dv["dataset_sha256"]:
        raise ConfigError(f"{splits}/dataset: differs from the dataset the model was trained on "
                          f"({str(trained_on)[:12]} vs {dv['dataset_sha256'][:12]}); evaluating on other splits "
                          "could leak training records into the test set")
    sd = load_splits(splits)
    tr, va, te = sd["train"], sd["validation"], sd["test"]
    max_length = int(prov["max_length"])
    threads = resolve_threads(cp.threads)
    M.set_determinism(params.seed, threads)
    t_stage = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    vdir = out / "variants"
    vdir.mkdir(exist_ok=True)

    with threadpool_limits(limits=threads):
        tokenizer = M.load_tokenizer(str(merged_dir))
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        teacher = M.load_pretrained_classifier(str(merged_dir)).eval()
        n_params = sum(p.numel() for p in teacher.parameters())
        common = {"max_length": max_length, "labels": prov.get("labels"), "source_model": "merged",
                  "data_version": dv["dataset_sha256"]}
        info: dict[str, dict[str, Any]] = {}

        def build(name: str, fn: Callable[[Path], None], **extra: Any) -> None:
            t0 = time.perf_counter()
            with atomic_dir(vdir / name) as tmp:
                fn(tmp)
            info[name] = {"build_s": round(time.perf_counter() - t0, 1), **extra}
            echo(f"built {name} in {info[name]['build_s']} s")

        build(REFERENCE, lambda d: _save_hf(teacher, tokenizer, d, {**common, "name": REFERENCE}),
              kind="fp32", params=n_params)
        build("int8", lambda d: _save_int8(quantize_int8(teacher), teacher.config, tokenizer, d,
                                           {**common, "name": "int8"}), kind="int8", params=n_params)

        ids_tr = M.encode(tokenizer, tr.texts, max_length)
        need_teacher = cp.pruning_sparsity > 0 and cp.recovery_steps > 0
        t_logits = None

        def get_t_logits():
            nonlocal t_logits
            if t_logits is None:
                from pipeline.train.shrink import teacher_logits

                t_logits = teacher_logits(teacher, ids_tr, pad_id, 64)
            return t_logits

        kd = {"lr": cp.learning_rate, "batch_size": cp.batch_size, "seed": params.seed,
              "temperature": cp.distill_temperature, "alpha": cp.distill_alpha}
        if cp.pruning_sparsity > 0:
            from pipeline.train.shrink import prune_global, sparsity

            recover = None
            if need_teacher:
                recover = {"t_logits": get_t_logits(), "ids": ids_tr, "labels": tr.labels, "pad_id": pad_id,
                           "max_steps": cp.recovery_steps, "epochs": 10**6, "desc": "prune recovery", **kd}
            pruned, rec = prune_global(teacher, cp.pruning_sparsity, recover)
            zeros, total = sparsity(pruned)
            extra = {"kind": "pruned", "params": n_params, "nonzero_params": n_params - zeros,
                     "sparsity": round(zeros / total, 4), "recovery_steps": cp.recovery_steps}
            build("pruned", lambda d: _save_hf(pruned, tokenizer, d, {**common, "name": "pruned",
                                                                      "sparsity": extra["sparsity"]}), **extra)
            build("pruned_int8", lambda d: _save_int8(quantize_int8(pruned), pruned.config, tokenizer, d,
                                                      {**common, "name": "pruned_int8"}),
                  **{**extra, "kind": "pruned_int8"})
            del pruned

        from pipeline.train.shrink import distill, make_student

        torch.manual_seed(params.seed)
        student, layer_map = make_student(teacher, cp.student_layers)
        from pipeline.train.trainer import auto_epochs

        d_epochs = auto_epochs(cp.distill_epochs, len(ids_tr), params.train.examples_budget, 2)
        dinfo = distill(student, get_t_logits(), ids_tr, tr.labels, pad_id, epochs=d_epochs,
                        desc="distill", **kd)
        s_params = sum(p.numel() for p in student.parameters())
        dname = "distilled"
        dextra = {"kind": "distilled", "params": s_params, "student_layers": cp.student_layers,
                  "teacher_layers_used": layer_map, "distill_steps": dinfo["steps"]}
        build(dname, lambda d: _save_hf(student, tokenizer, d, {**common, "name": dname,
                                                                "teacher_layers_used": layer_map}), **dextra)
        build(f"{dname}_int8", lambda d: _save_int8(quantize_int8(student), student.config, tokenizer, d,
                                                     {**common, "name": f"{dname}_int8"}),
              **{**dextra, "kind": "distilled_int8"})
        del student

        probe = M.collate(M.encode(tokenizer, va.texts[:2] or ["probe"], max_length), pad_id)
        build("onnx_fp32", lambda d: export_onnx(teacher, tokenizer, d, cp.onnx_opset,
                                                 {**common, "name": "onnx_fp32"}, probe),
              kind="onnx_fp32", params=n_params)
        build("onnx_int8", lambda d: quantize_onnx(vdir / "onnx_fp32", d, tokenizer, {**common, "name": "onnx_int8"}),
              kind="onnx_int8", params=n_params)
        onnx_diff = _onnx_agreement(teacher, vdir / "onnx_fp32", tokenizer, va.texts[:16], max_length, threads)

        def _baseline(d: Path) -> None:
            pipe, c = fit_baseline(tr.texts, tr.labels, tr.weights, va.texts, va.labels, params.seed)
            with open(d / "model.pkl", "wb") as fh:
                pickle.dump(pipe, fh, protocol=pickle.HIGHEST_PROTOCOL)
            write_variant_meta(d, {"name": BASELINE, "kind": "sklearn", "C": c,
                                   "features": "word 1-2gram + char_wb 2-5gram TF-IDF"})
            lr = pipe.named_steps["lr"]
            info[BASELINE] = {"params": int(lr.coef_.size + lr.intercept_.size), "C": c}

        t0 = time.perf_counter()
        with atomic_dir(vdir / BASELINE) as tmp:
            _baseline(tmp)
        info[BASELINE].update(kind="baseline", build_s=round(time.perf_counter() - t0, 1))
        del teacher

        # load every variant back from disk: what is measured is what ships
        names = list(info)
        predictors = {n: load_variant(vdir / n, threads=threads) for n in names}
        rows: list[dict[str, Any]] = []
        scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for n in tqdm(names, desc="compress: scoring variants", unit="variant", file=sys.stderr, disable=None):
            p_va = predictors[n].predict_proba(va.texts)
            p_te = predictors[n].predict_proba(te.texts)
            scores[n] = (p_va, p_te)
            thr = choose_threshold(va.labels, p_va)
            m_va, m_te = binary_metrics(va.labels, p_va, thr), binary_metrics(te.labels, p_te, thr)
            files = sorted(f.name for f in (vdir / n).rglob("*") if f.is_file())
            weight_files = {f for f in files if f.endswith((".safetensors", ".pt", ".onnx", ".pkl"))}
            rows.append({
                "name": n, "kind": info[n]["kind"],
                "size_mb": round(_size_mb(vdir / n), 3), "weights_mb": round(_size_mb(vdir / n, weight_files), 3),
                "params": int(info[n]["params"]),
                "pr_auc": m_te["pr_auc"], "f1": m_te["f1"], "recall_at_1pct_fpr": m_te["recall_at_1pct_fpr"],
                "roc_auc": m_te["roc_auc"], "precision": m_te["precision"], "recall": m_te["recall"],
                "threshold": thr, "val_pr_auc": m_va["pr_auc"], "val_f1": m_va["f1"], "build_s": info[n]["build_s"],
                **{k: v for k, v in info[n].items() if k not in ("params", "kind", "build_s")},
            })
            echo(f"{n}: validation PR-AUC {_r4(m_va['pr_auc'])}, test PR-AUC {_r4(m_te['pr_auc'])}, "
                 f"size {rows[-1]['size_mb']:.1f} MB")
        # paired bootstrap on validation against fp32 (same resamples for every variant)
        boot_idx = bootstrap_indices(len(va), cp.bootstrap, params.seed, va.labels)
        for r in rows:
            if r["name"] != REFERENCE:
                r["vs_fp32_val"] = paired_bootstrap(va.labels, scores[r["name"]][0], scores[REFERENCE][0],
                                                    idx=boot_idx)
                r["significant_below_fp32"] = r["vs_fp32_val"]["significant_below"]
        echo(f"timing {len(names)} variants: {cp.latency_runs} batch-1 calls and 5 batch-32 calls each")
        lat = measure_latency({n: predictors[n].predict_proba for n in names}, te.texts, cp.latency_runs)
        cost = _cost_per_1000({n: predictors[n].predict_proba for n in names}, te.texts)
        for r in rows:
            r.update({k: round(v, 4) for k, v in lat[r["name"]].items()})
            r.update(cost[r["name"]])

    ref = next(r for r in rows if r["name"] == REFERENCE)
    for r in rows:
        r["size_ratio"] = round(ref["size_mb"] / r["size_mb"], 3) if r["size_mb"] else None
        r["speedup_b1"] = round(ref["latency_p50_ms"] / r["latency_p50_ms"], 3) if r["latency_p50_ms"] else None
        r["pr_auc_drop"] = (round(ref["pr_auc"] - r["pr_auc"], 6)
                            if r["pr_auc"] is not None and ref["pr_auc"] is not None else None)
    rule = choose_variant_explained(rows, cp.pr_auc_budget, cp.baseline_floor)
    chosen = rule["chosen"]
    target = params.predict.target_precision
    for r in rows:  # router band per variant, chosen on validation
        band = router_band(va.labels, scores[r["name"]][0], r["threshold"], target)
        r["router"] = {**band, "validation": router_metrics(va.labels, scores[r["name"]][0], band),
                       "test": router_metrics(te.labels, scores[r["name"]][1], band)}
    crow = next(r for r in rows if r["name"] == chosen)
    # coverage against precision of the auto-routed part for a few targets (bands chosen on validation, read on test)
    router_curve = []
    for t in sorted({0.9, 0.95, 0.98, 0.99, target}):
        band = router_band(va.labels, scores[chosen][0], crow["threshold"], t)
        mv, mt = router_metrics(va.labels, scores[chosen][0], band), router_metrics(te.labels, scores[chosen][1], band)
        router_curve.append({"target_precision": t, "low": band["low"], "high": band["high"],
                             "val_coverage": mv["coverage"], "val_auto_precision": mv["auto_precision"],
                             "test_coverage": mt["coverage"], "test_auto_precision": mt["auto_precision"]})
    crow["router"]["curve"] = router_curve
    comparison = _versus_baseline(crow, scores, va, te, cp.bootstrap, params.seed)
    truth = _true_label_eval(params, splits, te, scores, rows, crow, cp.bootstrap)
    segments = segment_metrics(te.labels, scores[chosen][1], te.sources, crow["threshold"], cp.bootstrap, params.seed)
    segments_by = _segments_by(params, splits, te, scores[chosen][1], crow["threshold"], chosen, segments)
    warnings_: list[str] = []
    if rule.get("baseline_beats_all"):
        warnings_.append("the TF-IDF baseline's validation PR-AUC is above every SLM variant's: the 1 MB baseline "
                         "would serve this data better")
    elif rule.get("floor_met") is False:
        warnings_.append("no eligible variant reaches the TF-IDF baseline's validation PR-AUC; shipped the best one")
    warnings_.extend(segments["warnings"])
    for dim, r in segments_by["dimensions"].items():
        if dim != "source":
            warnings_.extend(r["warnings"])
    if comparison.get("test", {}).get("pr_auc", {}).get("significant_below"):
        warnings_.append("on test, the chosen variant's PR-AUC is significantly below the baseline's")
    anon = anonymizer_settings(params)
    ship = {
        "threshold": crow["threshold"], "labels": {"0": "legit", "1": "fraud"}, "positive_label": "fraud",
        "max_length": max_length, "pooling": prov.get("pooling"), "placeholder_handling": PLACEHOLDER_HANDLING,
        "anonymizer": {**anon, "key_fingerprint": gate.get("key_fingerprint")},
        "data_version": dv, "router": {k: crow["router"][k] for k in ("low", "high", "target_precision")},
        "metrics": {"validation": {"pr_auc": crow["val_pr_auc"], "f1": crow["val_f1"],
                                   "router": crow["router"]["validation"]},
                    "test": {k: crow[k] for k in ("pr_auc", "f1", "precision", "recall", "roc_auc",
                                                  "recall_at_1pct_fpr")} | {"router": crow["router"]["test"]}},
        "versus_baseline": comparison, "chosen_rule": {k: rule[k] for k in ("chosen_on", "floor_met",
                                                                             "baseline_beats_all") if k in rule},
        "segments": {"by": "source", "split": "test", **segments}, "segments_by": segments_by,
        "warnings": warnings_, "params_digest": params.digest(), "fraudslm_predict": "fraudslm predict --model DIR",
    }
    with atomic_dir(out / "chosen") as tmp:
        shutil.copytree(vdir / chosen, tmp, dirs_exist_ok=True)
        meta = read_variant_meta(tmp)
        write_variant_meta(tmp, {**meta, **ship})
        hf_name = chosen if meta.get("kind") == "hf" else REFERENCE
        hf_check = _hf_loading_check(tmp if hf_name == chosen else vdir / REFERENCE, va.texts[:8],
                                     scores[hf_name][0][:8])
        if hf_check is not None:
            hf_check["variant"] = hf_name
        write_text(tmp / "README.md", chosen_model_card(crow, rule, ship, rows, hf_check, prov, truth=truth))
    if not cp.keep_variants:
        shutil.rmtree(vdir, ignore_errors=True)

    notes = [
        f"test split: {len(te)} records ({int(te.labels.sum())} fraud); thresholds chosen on validation "
        f"({len(va)} records) per variant to maximise F1.",
        f"latency: CPU, {threads} thread(s) for torch and onnxruntime alike, {cp.latency_runs} batch-1 calls and "
        "5 batch-32 calls per variant after warm-up, interleaved in 5 rounds; tokenisation included.",
        "size: the whole folder each variant needs (weights + config + tokenizer); `weights_mb` in metrics.json "
        "counts the weight file alone.",
        f"pruned: {cp.pruning_sparsity:.0%} of encoder Linear weights zeroed (global L1), stored dense: no size or "
        "speed gain without sparse storage/kernels." if cp.pruning_sparsity > 0 else "pruning disabled.",
        f"distilled: {cp.student_layers}-layer student initialised from teacher layers {layer_map}, "
        f"{d_epochs} epoch(s) on teacher logits (T={cp.distill_temperature}, alpha={cp.distill_alpha}).",
        f"chosen on VALIDATION: smallest variant within a PR-AUC drop of {cp.pr_auc_budget} vs fp32 and not "
        "significantly below it (paired bootstrap)"
        + (" that also reaches the baseline's PR-AUC" if cp.baseline_floor and rule.get("floor_met") else "")
        + f" -> **{chosen}**"
        + (f" (the budget alone would pick {rule['budget_only_choice']})" if rule["budget_only_choice"] != chosen
           else "")
        + ("; no eligible variant reaches the baseline, the best one ships" if cp.baseline_floor
           and rule.get("floor_met") is False else "") + ".",
        f"ONNX fp32 vs torch fp32: max |logit diff| {onnx_diff:.2e} on 16 validation records.",
        f"router (target precision {target}, band chosen on validation): "
        f"{_router_line(crow['router']['test'])} on test for {chosen}.",
        *[f"WARNING: {w}." for w in warnings_],
    ]
    write_text(out / "compression_table.md", compression_table(rows, chosen, notes))
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_csv(out / "plots" / "router_coverage.csv", router_curve,
              ["target_precision", "test_coverage", "test_auto_precision", "val_coverage", "val_auto_precision"])
    # deterministic columns only (a DVC output): latencies are in compression_table.md / timings.json
    write_csv(out / "plots" / "size_vs_pr_auc.csv", rows, ["name", "size_mb", "pr_auc", "val_pr_auc", "f1", "kind"])
    plot_size_vs_pr_auc(rows, chosen, out / "plots" / "size_vs_pr_auc.png")
    write_ledger_or_fail(ledger_for("compress", sd), out)
    metrics = {
        "variants": rows,
        "chosen": chosen,
        "reference": REFERENCE,
        "baseline": BASELINE,
        "pr_auc_budget": cp.pr_auc_budget,
        "chosen_rule": rule,
        "variants_by_name": {r["name"]: {k: v for k, v in r.items() if k not in _VOLATILE_ROW} for r in rows},
        "router": crow["router"],
        "versus_baseline": comparison,
        "true_labels": truth,
        "segments": {"by": "source", "split": "test", "variant": chosen, **segments},
        "segments_by": segments_by,
        "warnings": warnings_,
        "hf_loading_check": hf_check,
        "threads": threads,
        "latency_runs": cp.latency_runs,
        "n_test": len(te),
        "n_validation": len(va),
        "onnx_max_abs_diff": onnx_diff,
        "upstream_gate": gate,
        "stage_time_s": round(time.perf_counter() - t_stage, 1),
    }
    write_metrics(out, CompressMetrics.model_validate(metrics))
    echo(f"chosen {chosen}; table in {out / 'compression_table.md'}")
    return metrics


def _size_mb(folder: Path, only: Optional[set[str]] = None) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and (only is None or f.name in only)) / 1e6


def _onnx_agreement(teacher, onnx_dir: Path, tokenizer, texts: list[str], max_length: int, threads: int) -> float:
    """Largest |logit| difference between the exported graph and torch on real, padded batches of another shape
    than the export probe; a broken export (shapes baked in) fails the stage."""
    import torch

    if not texts:
        return 0.0
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batch = M.collate(M.encode(tokenizer, texts, max_length), pad_id)
    with torch.inference_mode():
        ref = teacher(**batch).logits.float().numpy()
    sess = OnnxPredictor(onnx_dir, max_length, threads).session
    got = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    diff = float(np.abs(ref - got).max())
    if diff > 1e-2:
        raise GateError(f"{onnx_dir}/model.onnx: ONNX export disagrees with torch (max logit diff {diff:.2e})")
    return diff


def _r4(x: Optional[float]) -> Optional[float]:
    return None if x is None else round(float(x), 4)


def _router_line(m: dict[str, Any]) -> str:
    if not m.get("n"):
        return "no records"
    prec = m.get("auto_precision")
    return (f"{m['coverage']:.1%} of records auto-routed at precision "
            f"{'n/a' if prec is None else f'{prec:.3f}'} ({m['auto_fraud']} auto fraud, {m['auto_legit']} auto legit, "
            f"{m['review']} to review)")


def _cost_per_1000(predictors: dict[str, Callable[[list[str]], np.ndarray]], texts: list[str], n: int = 256
                   ) -> dict[str, dict[str, float]]:
    """CPU seconds (this process, all threads) per 1,000 texts scored in batches of 64, measured on `n` test texts
    (cycled) and scaled. Peak memory needs one process per variant: benchmarks/bench_train.py measures it."""
    sample = [texts[i % len(texts)] for i in range(n)] if texts else []
    out = {}
    for name, fn in predictors.items():
        if not sample:
            out[name] = {"cpu_s_per_1000": None}
            continue
        c0 = time.process_time()
        for j in range(0, len(sample), 64):
            fn(sample[j: j + 64])
        out[name] = {"cpu_s_per_1000": round((time.process_time() - c0) * 1000 / len(sample), 3)}
    return out


def _versus_baseline(crow: dict[str, Any], scores: dict[str, tuple[np.ndarray, np.ndarray]], va, te, n_boot: int,
                     seed: int) -> dict[str, Any]:
    """Chosen variant minus the TF-IDF baseline, paired bootstrap (class-stratified, 95% percentile intervals), PR-AUC
    and F1 at each model's own validation threshold, on validation and on test (test: reported, never chosen on)."""
    if BASELINE not in scores:
        return {}
    name = crow["name"]
    thr_c = crow["threshold"]
    thr_b = choose_threshold(va.labels, scores[BASELINE][0])
    out: dict[str, Any] = {"variant": name, "baseline": BASELINE}
    for split, sd, k in (("validation", va, 0), ("test", te, 1)):
        out[split] = {
            "pr_auc": paired_bootstrap(sd.labels, scores[name][k], scores[BASELINE][k], n_boot, seed),
            "f1": paired_bootstrap_f1(sd.labels, scores[name][k], thr_c, scores[BASELINE][k], thr_b, n_boot, seed),
        }
    return out


def _segments_by(params: Params, splits: Path, te, p: np.ndarray, threshold: float, chosen: str,
                 by_source: dict[str, Any]) -> dict[str, Any]:
    """The chosen variant on test per segment, for every segmentation in `compress.segments` (source, channel,
    region, amount band ...): the segment columns come from the split's test.parquet (split.segment_columns), matched
    by record_id; a segmentation without data is listed under `skipped` with the reason."""
    import pandas as pd

    cp = params.compress
    cols: dict[str, list[Any]] = {}
    path = splits / "test.parquet"
    if path.is_file():
        import pyarrow.parquet as pq

        have = set(pq.read_schema(path).names)
        want = [c for c in params.split.segment_columns if c in have]
        if want:
            f = pd.read_parquet(path, columns=["record_id", *want]).drop_duplicates("record_id").set_index("record_id")
            f = f.reindex(te.record_ids)
            cols = {c: f[c].astype(object).where(f[c].notna(), None).tolist() for c in want}
    values, skipped = segment_values(cols, list(cp.segments), list(cp.amount_bands), list(te.sources))
    out: dict[str, Any] = {"split": "test", "variant": chosen, "threshold": float(threshold),
                           "overall_recall": by_source.get("overall_recall"), "dimensions": {}, "skipped": skipped}
    for dim, vals in values.items():
        r = by_source if dim == "source" else segment_metrics(te.labels, p, vals, threshold, cp.bootstrap, params.seed,
                                                             dimension=dim)
        out["dimensions"][dim] = {"segments": r["segments"], "warnings": r["warnings"]}
    return out


def _true_label_eval(params: Params, splits_dir: Path, te, scores: dict[str, tuple[np.ndarray, np.ndarray]],
                     rows: list[dict[str, Any]], crow: dict[str, Any], n_boot: int) -> Optional[dict[str, Any]]:
    """Where a ground-truth folder exists (the demo's labels.csv: true and given label per record), every variant's
    test metrics against the TRUE labels beside the given ones, and the chosen variant minus the baseline on the true
    labels (paired bootstrap, as `versus_baseline`) (evaluation only; nothing is chosen on it)."""
    import csv

    from pipeline.config import ground_truth_dir
    from pipeline.ids import record_id

    truth_dir = ground_truth_dir(params)
    if truth_dir is None or not (truth_dir / "labels.csv").is_file():
        return None
    true: dict[str, int] = {}
    try:
        with open(truth_dir / "labels.csv", newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if r.get("true_label") in ("0", "1"):
                    rid = record_id(r["source"], r["key"])
                    true[rid] = int(r["true_label"])
    except (OSError, KeyError, csv.Error):
        return {"error": f"{truth_dir / 'labels.csv'}: unreadable"}
    idx = [i for i, rid in enumerate(te.record_ids) if rid in true]
    if not idx:
        return {"matched": 0}
    y_true = np.array([true[te.record_ids[i]] for i in idx])
    y_given = te.labels[idx]
    out: dict[str, Any] = {"matched": len(idx), "n_fraud_true": int(y_true.sum()), "n_fraud_given": int(y_given.sum()),
                           "label_disagreements": int((y_true != y_given).sum()), "variants": {}}
    for r in rows:
        p = scores[r["name"]][1][idx]
        mt = binary_metrics(y_true, p, r["threshold"])
        out["variants"][r["name"]] = {"pr_auc_true": mt["pr_auc"], "f1_true": mt["f1"], "recall_true": mt["recall"],
                                      "precision_true": mt["precision"], "pr_auc_given": r["pr_auc"],
                                      "f1_given": r["f1"]}
    if BASELINE in scores and y_true.sum() > 0:
        name, thr_b = crow["name"], next((r["threshold"] for r in rows if r["name"] == BASELINE), None)
        pc, pb = scores[name][1][idx], scores[BASELINE][1][idx]
        out["versus_baseline_true"] = {"variant": name, "baseline": BASELINE, "split": "test",
                                       "pr_auc": paired_bootstrap(y_true, pc, pb, n_boot, params.seed)}
        if thr_b is not None:
            out["versus_baseline_true"]["f1"] = paired_bootstrap_f1(y_true, pc, crow["threshold"], pb, thr_b, n_boot,
                                                                    params.seed)
    return out


def anonymizer_settings(params: Params) -> dict[str, Any]:
    from pipeline.anonymize.text_api import settings_digest

    return settings_digest(params.anonymize)


def _hf_loading_check(folder: Path, texts: list[str], expected: np.ndarray) -> Optional[dict[str, Any]]:
    """Load the shipped folder the Hugging Face way (AutoModelForSequenceClassification, trust_remote_code=True,
    from the folder's own modeling_fraudslm.py) and compare its probabilities with what predict gives."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if not texts:
        return None
    with M.quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), trust_remote_code=True).eval()
        tok = AutoTokenizer.from_pretrained(str(folder))
    got = []
    with torch.inference_mode():
        for t in texts:
            enc = tok([M.model_text(t)], truncation=True, max_length=int(read_variant_meta(folder)["max_length"]),
                      return_tensors="pt")
            enc.pop("token_type_ids", None)
            got.append(float(torch.softmax(model(**enc).logits.float(), -1)[0, 1]))
    diff = float(np.abs(np.asarray(got) - np.asarray(expected)).max())
    return {"class": type(model).__name__, "max_abs_prob_diff": diff, "n": len(texts), "passed": diff < 1e-4}


def chosen_model_card(crow: dict[str, Any], rule: dict[str, Any], ship: dict[str, Any], rows: list[dict[str, Any]],
                      hf_check: Optional[dict[str, Any]], prov: dict[str, Any],
                      truth: Optional[dict[str, Any]] = None) -> str:
    """README.md of the shipped folder: the CHOSEN variant's own figures (threshold, router, baseline comparison;
    `truth`: the figures against the demo's true labels, when ground truth was given)."""
    def f(x: Any, nd: int = 3) -> str:
        return "n/a" if x is None else (f"{x:.{nd}f}" if isinstance(x, float) else str(x))

    rt, rv = crow["router"]["test"], crow["router"]["validation"]
    vb = ship.get("versus_baseline") or {}
    lines = [
        f"# fraudslm fraud classifier: shipped variant `{crow['name']}`",
        "",
        "Scores free-text finance records for fraud risk to **prioritise human review**. Score new raw text with",
        "`fraudslm predict --model <this folder> --in texts.jsonl --out scores.jsonl` (or",
        "`pipeline.predict.load(folder).predict(texts)`): it anonymizes with the same detector, operators and key",
        "(`FRAUDSLM_PSEUDONYM_KEY`), reduces placeholders as training did, and writes no text.",
        "",
        "## Decision and router (this variant's own figures)",
        f"- threshold **{f(crow['threshold'], 4)}** (maximises F1 on validation; `variant.json` `threshold`)",
        f"- router band (chosen on validation for precision {ship['router']['target_precision']}): scores >= "
        f"{f(ship['router']['high'], 4)} are auto-labelled fraud, scores < {f(ship['router']['low'], 4)} auto-labelled "
        "legit, the rest go to review (a human queue or a larger model)"
        + ("; **the band is empty on this data**: validation already meets the target precision at the threshold, "
           "so every record is auto-routed and nothing is deferred (data unlike validation is not caught by it)"
           if ship["router"]["low"] == ship["router"]["high"] else ""),
        "",
        "| split | coverage (auto-routed) | precision of auto decisions | auto fraud (precision) | auto legit "
        "(precision) | to review (of which fraud) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in (("validation", rv), ("test", rt)):
        lines.append(f"| {name} | {f(m['coverage'])} | {f(m['auto_precision'])} | {m['auto_fraud']} "
                     f"({f(m['auto_fraud_precision'])}) | {m['auto_legit']} ({f(m['auto_legit_precision'])}) | "
                     f"{m['review']} ({m['review_fraud']}) |")
    if crow["router"].get("curve"):
        lines += ["", "Coverage against precision of the auto-routed part (band chosen on validation per target, "
                  "read on test):", "", "| target precision | test coverage | test precision of auto decisions |",
                  "| --- | --- | --- |"]
        lines += [f"| {c['target_precision']} | {f(c['test_coverage'])} | {f(c['test_auto_precision'])} |"
                  for c in crow["router"]["curve"]]
    lines += [
        "",
        "## Metrics",
        "| split | PR-AUC | F1 @ threshold | precision | recall | recall @ 1% FPR |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| validation | {f(crow['val_pr_auc'])} | {f(crow['val_f1'])} | | | |",
        f"| test | {f(crow['pr_auc'])} | {f(crow['f1'])} | {f(crow['precision'])} | {f(crow['recall'])} | "
        f"{f(crow['recall_at_1pct_fpr'])} |",
        "",
    ]
    if vb:
        lines.append("Against the TF-IDF + logistic regression baseline (chosen minus baseline, paired bootstrap 95%):")
        for split in ("validation", "test"):
            for m in ("pr_auc", "f1"):
                d = vb[split][m]
                lines.append(f"- {split} {m.replace('_', '-').upper()}: {f(d['diff'], 4)} "
                             f"[{f(d['ci_low'], 4)}, {f(d['ci_high'], 4)}]")
        lines.append("")
    tl = (truth or {}).get("versus_baseline_true") or {}
    if tl.get("pr_auc"):
        d = tl["pr_auc"]
        lines += [f"Against the ground truth (demo; test records with a true label): chosen minus baseline PR-AUC "
                  f"{f(d['diff'], 4)} [{f(d['ci_low'], 4)}, {f(d['ci_high'], 4)}] (paired bootstrap 95%).", ""]
    seg = ship.get("segments") or {}
    dims = (ship.get("segments_by") or {}).get("dimensions") or ({"source": seg} if seg.get("segments") else {})
    for dim, block in dims.items():
        if not block.get("segments"):
            continue
        word = dim.replace("_", " ")
        lines += [f"Per {word} on test (recall at the threshold, 95% Wilson interval; PR-AUC, 95% bootstrap "
                  f"interval; overall recall {f(seg.get('overall_recall'))}):", "", f"| {word} | records | fraud | PR-AUC | recall |",
                  "| --- | --- | --- | --- | --- |"]
        for name, r in block["segments"].items():
            pr = f"{f(r['pr_auc'])} [{f(r['pr_auc_ci'][0])}, {f(r['pr_auc_ci'][1])}]" if "pr_auc" in r else "n/a"
            rc = (f"{f(r['recall'])} [{f(r['recall_ci'][0])}, {f(r['recall_ci'][1])}]"
                  + (" **below overall**" if r.get("recall_below_overall") else "")) if "recall" in r else "n/a"
            lines.append(f"| {name} | {r['n']} | {r['n_fraud']} | {pr} | {rc} |")
        lines.append("")
    skipped = (ship.get("segments_by") or {}).get("skipped") or {}
    if skipped:
        lines += ["Segmentations not evaluated: " + "; ".join(f"{k} ({v})" for k, v in skipped.items()) + ".", ""]
    if rule.get("baseline_beats_all"):
        lines += ["**WARNING: the TF-IDF baseline beats every SLM variant on validation PR-AUC.** The 1 MB baseline "
                  "would serve this data better; this folder ships the best SLM variant anyway.", ""]
    elif rule.get("floor_met") is False:
        lines += ["**WARNING: no eligible variant reaches the TF-IDF baseline's validation PR-AUC**; the best one "
                  "ships.", ""]
    lines += [
        "## How it was chosen",
        f"On validation only: eligible = within a PR-AUC drop of {rule['pr_auc_budget']} of fp32 and not significantly "
        f"below it (paired bootstrap); eligible: {', '.join(rule['eligible'])}; significantly below fp32: "
        f"{', '.join(rule['significantly_below_fp32']) or 'none'}. Floor met: {rule.get('floor_met')}.",
        "",
        "| variant | size MB | validation PR-AUC | test PR-AUC | threshold |",
        "| --- | --- | --- | --- | --- |",
        *[f"| {r['name']} | {f(r['size_mb'], 1)} | {f(r['val_pr_auc'])} | {f(r['pr_auc'])} | {f(r['threshold'], 4)} |"
          for r in rows],
        "",
        "Latency, throughput and CPU seconds per 1,000 texts of each variant (measured on the machine that built "
        "this folder; they differ between identical runs, so they are kept out of this card) are in the compress "
        "stage's `compression_table.md` and `timings.json`.",
        "",
        "## Loading it the Hugging Face way",
    ]
    if hf_check is not None and hf_check.get("variant") != crow["name"]:
        lines.append(f"This variant is `{crow['kind']}`, not a transformers checkpoint: load it with "
                     "`pipeline.predict.load(folder)` (ONNX: onnxruntime + tokenizers only, no torch). The fp32 "
                     "variant (and `train`'s merged/ folder) is:")
    if hf_check is not None:
        lines.append(f"`AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)` builds "
                     f"`{hf_check['class']}` (mean pooling, code in `modeling_fraudslm.py`); on {hf_check['n']} "
                     f"validation texts its probabilities differ from predict's by at most "
                     f"{hf_check['max_abs_prob_diff']:.1e} ({'PASS' if hf_check['passed'] else 'FAIL'}). Without "
                     "`trust_remote_code=True` transformers refuses the folder (model type `fraudslm_bert`) instead of "
                     "building another model. Inputs must be anonymized and placeholder-reduced first.")
    else:
        lines.append(f"This variant is `{ship.get('kind', crow['kind'])}`, not a transformers checkpoint: load it "
                     "with `pipeline.predict.load(folder)` (ONNX: onnxruntime + tokenizers only, no torch).")
    lines += [
        "",
        "## Travels with this folder (`variant.json`)",
        f"threshold, labels, max_length {ship['max_length']}, placeholder handling `{ship['placeholder_handling']}`, "
        f"anonymizer settings digest `{ship['anonymizer']['digest'][:16]}` (key fingerprint "
        f"`{ship['anonymizer'].get('key_fingerprint')}`), data version "
        f"`{str(ship['data_version'].get('dataset_sha256'))[:16]}`, metrics, router band.",
        "",
        "## Limitations",
        "- The threshold and band are tuned at the validation split's fraud prevalence; re-tune for another.",
        "- Texts beyond max_length tokens are truncated. Not evaluated for fairness across customer groups; do not "
        "use for automated adverse decisions.",
        f"- Base model: {prov.get('base_model_name', 'n/a')}.",
        "",
    ]
    return "\n".join(lines)
