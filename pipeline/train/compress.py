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
from pipeline.io import atomic_dir, read_json, write_json, write_text
from pipeline.train import model as M
from pipeline.train.artifacts import compression_table, plot_size_vs_pr_auc, write_csv
from pipeline.train.data import check_upstream_gate, data_version, ledger_for, load_splits, write_ledger_or_fail
from pipeline.train.metrics import binary_metrics, choose_threshold
from pipeline.train.predict import (
    INT8_FILE,
    OnnxPredictor,
    load_variant,
    quantize_int8,
    write_variant_meta,
)
from pipeline.train.trainer import PROVENANCE_FILE

REFERENCE = "fp32"
BASELINE = "baseline_tfidf_lr"
METRIC_KEYS = ("name", "size_mb", "params", "latency_p50_ms", "latency_p95_ms", "throughput_b32", "pr_auc", "f1",
               "recall_at_1pct_fpr")


def echo(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"compress: {msg}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------------------------
# writers, one per variant kind


def _save_hf(model, tokenizer, folder: Path, meta: dict[str, Any]) -> None:
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_variant_meta(folder, {**meta, "kind": "hf"})


def _save_int8(qmodel, config, tokenizer, folder: Path, meta: dict[str, Any]) -> None:
    import torch

    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
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


def choose_variant(variants: list[dict[str, Any]], budget: float, baseline_floor: bool = False) -> str:
    """Smallest (then fastest) SLM variant whose test PR-AUC is within `budget` of fp32; with `baseline_floor`, among
    those, the smallest that also reaches the TF-IDF baseline's PR-AUC (when none does, the budget alone decides)."""
    return choose_variant_explained(variants, budget, baseline_floor)["chosen"]


def choose_variant_explained(variants: list[dict[str, Any]], budget: float, baseline_floor: bool) -> dict[str, Any]:
    ref = next(v for v in variants if v["name"] == REFERENCE)
    ok = [v for v in variants if v["kind"] != "baseline" and v["pr_auc"] is not None and ref["pr_auc"] is not None
          and ref["pr_auc"] - v["pr_auc"] <= budget + 1e-12]

    def smallest(vs: list[dict[str, Any]]) -> str:
        return min(vs, key=lambda v: (round(v["size_mb"], 3), v["latency_p50_ms"], v["name"]))["name"]

    budget_only = smallest(ok) if ok else REFERENCE
    out: dict[str, Any] = {"chosen": budget_only, "pr_auc_budget": budget, "baseline_floor": baseline_floor,
                           "budget_only_choice": budget_only}
    base = next((v for v in variants if v["kind"] == "baseline" and v["pr_auc"] is not None), None)
    if baseline_floor and base is not None:
        floor = [v for v in ok if v["pr_auc"] >= base["pr_auc"] - 1e-12]
        out["baseline_pr_auc"] = base["pr_auc"]
        out["floor_met"] = bool(floor)
        if floor:
            out["chosen"] = smallest(floor)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the stage


def run_compress(inp: Path, splits: Path, out: Path, params: Params) -> dict[str, Any]:
    import torch
    from threadpoolctl import threadpool_limits

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
    M.set_determinism(params.seed, cp.threads)
    t_stage = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    vdir = out / "variants"
    vdir.mkdir(exist_ok=True)

    with threadpool_limits(limits=cp.threads):
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
        dinfo = distill(student, get_t_logits(), ids_tr, tr.labels, pad_id, epochs=cp.distill_epochs,
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
        onnx_diff = _onnx_agreement(teacher, vdir / "onnx_fp32", tokenizer, va.texts[:16], max_length, cp.threads)

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
        predictors = {n: load_variant(vdir / n, threads=cp.threads) for n in names}
        rows: list[dict[str, Any]] = []
        for n in names:
            p_va = predictors[n].predict_proba(va.texts)
            p_te = predictors[n].predict_proba(te.texts)
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
            echo(f"{n}: test PR-AUC {m_te['pr_auc'] if m_te['pr_auc'] is None else round(m_te['pr_auc'], 4)}, "
                 f"size {rows[-1]['size_mb']:.1f} MB")
        echo(f"timing {len(names)} variants: {cp.latency_runs} batch-1 calls and 5 batch-32 calls each")
        lat = measure_latency({n: predictors[n].predict_proba for n in names}, te.texts, cp.latency_runs)
        for r in rows:
            r.update({k: round(v, 4) for k, v in lat[r["name"]].items()})

    ref = next(r for r in rows if r["name"] == REFERENCE)
    for r in rows:
        r["size_ratio"] = round(ref["size_mb"] / r["size_mb"], 3) if r["size_mb"] else None
        r["speedup_b1"] = round(ref["latency_p50_ms"] / r["latency_p50_ms"], 3) if r["latency_p50_ms"] else None
        r["pr_auc_drop"] = (round(ref["pr_auc"] - r["pr_auc"], 6)
                            if r["pr_auc"] is not None and ref["pr_auc"] is not None else None)
    rule = choose_variant_explained(rows, cp.pr_auc_budget, cp.baseline_floor)
    chosen = rule["chosen"]
    with atomic_dir(out / "chosen") as tmp:
        shutil.copytree(vdir / chosen, tmp, dirs_exist_ok=True)
    if not cp.keep_variants:
        shutil.rmtree(vdir, ignore_errors=True)

    notes = [
        f"test split: {len(te)} records ({int(te.labels.sum())} fraud); thresholds chosen on validation "
        f"({len(va)} records) per variant to maximise F1.",
        f"latency: CPU, {cp.threads} thread(s) for torch and onnxruntime alike, {cp.latency_runs} batch-1 calls and "
        "5 batch-32 calls per variant after warm-up, interleaved in 5 rounds; tokenisation included.",
        "size: the whole folder each variant needs (weights + config + tokenizer); `weights_mb` in metrics.json "
        "counts the weight file alone.",
        f"pruned: {cp.pruning_sparsity:.0%} of encoder Linear weights zeroed (global L1), stored dense: no size or "
        "speed gain without sparse storage/kernels." if cp.pruning_sparsity > 0 else "pruning disabled.",
        f"distilled: {cp.student_layers}-layer student initialised from teacher layers {layer_map}, "
        f"{cp.distill_epochs} epoch(s) on teacher logits (T={cp.distill_temperature}, alpha={cp.distill_alpha}).",
        f"chosen: smallest variant within a PR-AUC drop of {cp.pr_auc_budget} vs fp32"
        + (" that also reaches the baseline's PR-AUC" if cp.baseline_floor and rule.get("floor_met") else "")
        + f" -> **{chosen}**"
        + (f" (the budget alone would pick {rule['budget_only_choice']})" if rule["budget_only_choice"] != chosen
           else "")
        + ("; no variant within the budget reaches the baseline" if cp.baseline_floor and rule.get("floor_met") is False
           else "") + ".",
        f"ONNX fp32 vs torch fp32: max |logit diff| {onnx_diff:.2e} on 16 validation records.",
    ]
    write_text(out / "compression_table.md", compression_table(rows, chosen, notes))
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_csv(out / "plots" / "size_vs_pr_auc.csv", rows, ["name", "size_mb", "pr_auc", "latency_p50_ms", "kind"])
    plot_size_vs_pr_auc(rows, chosen, out / "plots" / "size_vs_pr_auc.png")
    write_ledger_or_fail(ledger_for("compress", sd), out)
    metrics = {
        "variants": rows,
        "chosen": chosen,
        "reference": REFERENCE,
        "baseline": BASELINE,
        "pr_auc_budget": cp.pr_auc_budget,
        "chosen_rule": rule,
        "threads": cp.threads,
        "latency_runs": cp.latency_runs,
        "n_test": len(te),
        "n_validation": len(va),
        "onnx_max_abs_diff": onnx_diff,
        "upstream_gate": gate,
        "stage_time_s": round(time.perf_counter() - t_stage, 1),
    }
    write_json(out / "metrics.json", metrics)
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
    sess = OnnxPredictor(onnx_dir / "model.onnx", tokenizer, max_length, threads).session
    got = sess.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    diff = float(np.abs(ref - got).max())
    if diff > 1e-2:
        raise GateError(f"{onnx_dir}/model.onnx: ONNX export disagrees with torch (max logit diff {diff:.2e})")
    return diff
