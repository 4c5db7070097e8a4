"""`fraudslm train`: LoRA fine-tune of the base SLM on the anonymized splits.

A plain PyTorch loop (faster and simpler than HF Trainer on CPU): dynamic padding with length buckets, class- or
sample-weighted cross-entropy, linear warm-up/decay, early stopping on validation PR-AUC, a checkpoint per epoch
(adapter + optimizer + scheduler + RNG state) from which a rerun resumes bit-for-bit. Outputs in `out/`:
`adapter/`, `merged/` (+ tokenizer + `fraudslm.json`), `training_args.json`, `model_card.md`, `metrics.json`,
`ledger.json`, `plots/pr_curve.{png,csv}`, `checkpoints/`.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.config import Params
from pipeline.errors import ConfigError, GateError
from pipeline.contracts import TrainMetrics, write_metrics
from pipeline.io import atomic_dir, write_json, write_text
from pipeline.train import model as M
from pipeline.train.artifacts import model_card, plot_pr_curve, write_csv
from pipeline.train.data import (
    check_upstream_gate,
    data_version,
    dumps_stable,
    git_info,
    ledger_for,
    library_versions,
    load_splits,
    write_ledger_or_fail,
)
from pipeline.train.metrics import binary_metrics, choose_threshold, pr_curve_table
from pipeline.train.resources import resolve_threads

PROVENANCE_FILE = "fraudslm.json"


def echo(msg: str) -> None:
    """Progress line on stderr (never carries record content)."""
    from tqdm import tqdm

    tqdm.write(f"train: {msg}", file=sys.stderr)


def _fingerprint(params: Params, dv: dict[str, Any], n_train: int) -> str:
    """What a checkpoint must match to be resumed: train params, seed, data version, train size."""
    tp = params.train.model_dump(mode="json")
    return hashlib.sha256(dumps_stable({"train": tp, "seed": params.seed, "data": dv, "n": n_train}).encode()
                          ).hexdigest()[:16]


def _select_train(sd, max_samples: Optional[int], seed: int) -> Optional[set[str]]:
    if max_samples is None or len(sd) <= max_samples:
        return None
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(sd), size=max_samples, replace=False))
    return {sd.record_ids[i] for i in keep}


def _loss_weights(labels: np.ndarray, sample_w: Optional[np.ndarray], class_weighted: bool) -> tuple[np.ndarray, str]:
    """Per-record loss weights. Sample weights from the split stage win (they already encode its rebalancing);
    otherwise inverse class frequency when `class_weighted`."""
    if sample_w is not None:
        return sample_w.astype(np.float32), "sample weights from the split stage"
    if class_weighted:
        n, n_pos = len(labels), int(labels.sum())
        w = np.array([n / (2 * (n - n_pos)), n / (2 * n_pos)], dtype=np.float32)
        return w[labels], f"class-weighted (legit {w[0]:.3f}, fraud {w[1]:.3f})"
    return np.ones(len(labels), dtype=np.float32), "unweighted"


def diverged(history: list[dict[str, Any]], train_loss: float, val_auc: float, best_auc: float,
             ratio: Optional[float]) -> bool:
    """True when this epoch's mean training loss rose above `ratio` x the last good (not rolled back) epoch's and
    validation PR-AUC did not improve: the optimizer overshot (seen on SMS spam at lr 3e-3: loss 0.39 -> 0.91,
    validation PR-AUC 0.90 -> 0.23), so the epoch is undone rather than trained on from."""
    if ratio is None:
        return False
    good = [h["train_loss"] for h in history if not h.get("rolled_back")]
    if not good or not np.isfinite(good[-1]):
        return False
    return (not np.isfinite(train_loss) or train_loss > ratio * good[-1]) and not val_auc > best_auc + 1e-6


def _tidy_adapter(folder: Path, base_label: str) -> None:
    """Make the saved adapter byte-identical on every machine: peft writes `target_modules` in set order (varies
    with the hash seed) and a README template naming the base model's absolute path under `.venv`."""
    cfg_path = folder / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("target_modules", "feedforward_modules"):  # IA3 has both
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    write_json(cfg_path, cfg)
    write_text(folder / "README.md",
               "# fraudslm adapter\n\n"
               f"{cfg.get('peft_type', 'LORA')} adapter (peft) for the fraud classifier, base model: {base_label}. "
               "Load it with "
               "`peft.PeftModel.from_pretrained(base, this_folder)`, or use the merged model in `../merged`.\n"
               "Training data, figures and limitations: `../model_card.md`.\n")


def _trainable_state(model) -> dict[str, Any]:
    return {n: p.detach().to("cpu").clone() for n, p in model.named_parameters() if p.requires_grad}


def _load_trainable(model, state: dict[str, Any]) -> None:
    import torch

    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, t in state.items():
            params[n].copy_(t.to(params[n].device))


def _checkpoints(ckdir: Path) -> list[Path]:
    if not ckdir.is_dir():
        return []
    return sorted(p for p in ckdir.iterdir() if p.is_dir() and p.name.startswith("epoch-")
                  and (p / "state.pt").is_file())


def _load_checkpoint(ckdir: Path, fingerprint: str) -> Optional[dict[str, Any]]:
    """The last complete checkpoint written for the same params and data, or None (stale ones are removed)."""
    import torch

    cks = _checkpoints(ckdir)
    if not cks:
        return None
    try:
        state = torch.load(cks[-1] / "state.pt", map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt checkpoint is ignored, training restarts
        echo(f"checkpoint {cks[-1].name} unreadable ({type(exc).__name__}); starting fresh")
        state = None
    if state is None or state.get("fingerprint") != fingerprint:
        if state is not None:
            echo("checkpoints are from other params or data; starting fresh")
        shutil.rmtree(ckdir, ignore_errors=True)
        return None
    return state


def auto_epochs(setting, n_rows: int, budget: int, max_epochs: int) -> int:
    """`epochs: auto`: whole passes over every train row that fit `budget` examples, between 1 and `max_epochs`
    (demo, ~5,300 train rows: 1; SMS dev, ~2,700: 2; a few hundred rows: max_epochs)."""
    if setting != "auto":
        return int(setting)
    return int(min(max_epochs, max(1, round(budget / max(1, n_rows)))))


def lr_rule(total_steps: int) -> float:
    """`learning_rate: auto`: 3e-3 x sqrt(150 / steps), clipped to [1e-3, 3e-3]. Support: 3e-3 was best on the demo
    at ~140 steps (730 rows x 6 epochs), 1e-3 on SMS at ~470 steps, where 3e-3 diverged (README)."""
    return float(min(3e-3, max(1e-3, 3e-3 * math.sqrt(150 / max(1, total_steps)))))


def _stratified_sample(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    if len(y) <= k:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    out = []
    for c in (0, 1):
        idx = np.flatnonzero(y == c)
        take = max(1, round(k * idx.size / len(y))) if idx.size else 0
        out.append(rng.choice(idx, size=min(take, idx.size), replace=False))
    return np.sort(np.concatenate(out))


def _sweep_lr(tp, seed: int, base_path: str, ids_tr, y_tr, w_tr, ids_va, y_va, pad_id: int, dev
              ) -> tuple[float, list[dict[str, Any]]]:
    """`learning_rate: auto`: one epoch per candidate on a class-stratified sample of up to `lr_sweep_rows` train
    rows (fresh LoRA each, same seed and batches), scored on validation (up to 2,000 rows); the best validation
    PR-AUC wins, ties (within 0.005) go to the smaller rate. No data-set-specific constant: the sweep replaces the
    demo's 3e-3 and SMS's 1e-3."""
    import torch
    import torch.nn.functional as F
    from transformers import get_linear_schedule_with_warmup

    idx = _stratified_sample(y_tr, tp.lr_sweep_rows, seed)
    vidx = _stratified_sample(np.asarray(y_va), 2000, seed + 1)
    ids_s, y_s = [ids_tr[i] for i in idx], y_tr[idx]
    w_s, _ = _loss_weights(y_s, None, tp.class_weighted) if w_tr is None else (w_tr[idx], "")
    ids_v, y_v = [ids_va[i] for i in vidx], np.asarray(y_va)[vidx]
    results: list[dict[str, Any]] = []
    for lr in sorted(tp.lr_candidates):
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        base = M.load_classifier(base_path, pooling=tp.pooling)
        model = M.apply_lora(base, M.lora_config(tp, M.n_layers(base))).to(dev)
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=tp.weight_decay)
        batches = M.train_batches([len(x) for x in ids_s], tp.batch_size, seed, 1)
        sched = get_linear_schedule_with_warmup(opt, int(tp.warmup_ratio * len(batches)), len(batches))
        model.train()
        for b in batches:
            batch = {k: v.to(dev) for k, v in M.collate([ids_s[i] for i in b], pad_id).items()}
            y = torch.as_tensor(y_s[b], device=dev)
            w = torch.as_tensor(w_s[b], device=dev)
            loss = (F.cross_entropy(model(**batch).logits.float(), y, reduction="none") * w).sum() / w.sum()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        auc = binary_metrics(y_v, M.predict_ids(model, ids_v, pad_id, tp.eval_batch_size, dev), 0.5)["pr_auc"]
        results.append({"learning_rate": lr, "val_pr_auc": None if auc is None else round(float(auc), 6),
                        "rows": len(idx), "seconds": round(time.perf_counter() - t0, 1)})
        echo(f"learning-rate sweep: lr {lr:g} -> validation PR-AUC {auc if auc is None else round(auc, 4)}")
        del model, base, opt
    scored = [r for r in results if r["val_pr_auc"] is not None]
    if not scored:
        return float(sorted(tp.lr_candidates)[0]), results
    top = max(r["val_pr_auc"] for r in scored)
    lr = min(r["learning_rate"] for r in scored if r["val_pr_auc"] >= top - 0.005)
    return float(lr), results


def run_train(inp: Path, out: Path, params: Params) -> dict[str, Any]:
    """Fine-tune with LoRA; write adapter, merged model, metrics, card, ledger and plots into `out`."""
    with M.known_warnings_silenced():
        return _run_train(inp, out, params)


def _run_train(inp: Path, out: Path, params: Params) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from tqdm import tqdm
    from transformers import get_linear_schedule_with_warmup

    inp, out = Path(inp), Path(out)
    tp = params.train
    gate = check_upstream_gate(inp, params)  # before any record is read
    splits = load_splits(inp)
    tr, va, te = splits["train"], splits["validation"], splits["test"]
    for sd in (tr, va):
        if len(sd) == 0 or int(sd.labels.sum()) in (0, len(sd)):
            raise ConfigError(f"{inp}/dataset: split {sd.name!r} needs both classes (has {len(sd)} records, "
                              f"{int(sd.labels.sum())} fraud)")
    keep = _select_train(tr, tp.max_train_samples, params.seed)
    tr_idx = [i for i, r in enumerate(tr.record_ids) if keep is None or r in keep]
    used = {"train": keep} if keep is not None else None

    out.mkdir(parents=True, exist_ok=True)
    threads = resolve_threads(tp.threads)
    M.set_determinism(params.seed, threads)
    dv = data_version(inp)
    base_path = M.resolve_base_model(tp.base_model)
    use_q, q_why = M.resolve_qlora(tp.qlora)
    dev = M.device()
    echo(f"base model {tp.base_model}; pooling {tp.pooling}; QLoRA: {q_why}; device {dev}, {threads} threads; "
         f"train {len(tr_idx)} / validation {len(va)} / test {len(te)} records")

    tokenizer = M.load_tokenizer(base_path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    torch.manual_seed(params.seed)
    base = M.load_classifier(base_path, M.bnb_config() if use_q else None, pooling=tp.pooling)
    pooling = base.config.fraudslm_pooling
    num_layers = M.n_layers(base)
    if use_q:  # pragma: no cover - CUDA only
        from peft import prepare_model_for_kbit_training

        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    model = M.apply_lora(base, M.lora_config(tp, num_layers))
    if not use_q:
        model.to(dev)
    trainable_n, total_n = M.count_params(model)

    ids_tr = M.encode(tokenizer, [tr.texts[i] for i in tr_idx], tp.max_length)
    y_tr = tr.labels[tr_idx]
    ids_va = M.encode(tokenizer, va.texts, tp.max_length)
    ids_te = M.encode(tokenizer, te.texts, tp.max_length)
    w_tr, weighting = _loss_weights(y_tr, tr.weights[tr_idx] if tr.weights is not None else None, tp.class_weighted)
    lengths = [len(x) for x in ids_tr]

    fingerprint = _fingerprint(params, dv, len(ids_tr))
    ckdir = out / "checkpoints"
    state = _load_checkpoint(ckdir, fingerprint)
    sweep: Optional[list[dict[str, Any]]] = None
    epochs = auto_epochs(tp.epochs, len(ids_tr), tp.examples_budget, tp.max_epochs)
    steps_per_epoch = math.ceil(len(ids_tr) / tp.batch_size)
    total_steps = steps_per_epoch * epochs
    if tp.learning_rate == "auto":
        lr = lr_rule(total_steps)
    elif tp.learning_rate != "sweep":
        lr = float(tp.learning_rate)
    elif state is not None and state.get("learning_rate"):
        lr, sweep = float(state["learning_rate"]), state.get("lr_sweep")
    else:
        lr, sweep = _sweep_lr(tp, params.seed, base_path, ids_tr, y_tr, w_tr, ids_va, va.labels, pad_id, dev)
        torch.manual_seed(params.seed)
    echo(f"{epochs} epoch(s) of {len(ids_tr)} rows ({total_steps} steps), learning rate {lr:.2g}"
         f"{' (rule)' if tp.learning_rate == 'auto' else ' (sweep)' if sweep else ''}")

    trainable = [p for p in model.parameters() if p.requires_grad]
    if tp.loraplus_lr_ratio:
        from peft.optimizers import create_loraplus_optimizer

        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr,
                                        loraplus_lr_ratio=tp.loraplus_lr_ratio, loraplus_weight_decay=tp.weight_decay)
    else:
        opt = torch.optim.AdamW(trainable, lr=lr, weight_decay=tp.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, int(tp.warmup_ratio * total_steps), total_steps)

    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": 0, "pr_auc": -1.0}
    best_state = _trainable_state(model)
    bad, stopped, start_epoch, resumed_from = 0, False, 0, None
    if state is not None:
        _load_trainable(model, state["trainable"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():  # pragma: no cover - CUDA only
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, best, bad, stopped = state["history"], state["best"], state["bad_epochs"], state["stopped"]
        best_state = state["best_trainable"]
        start_epoch = resumed_from = int(state["epoch"])
        echo(f"resuming after epoch {start_epoch} from {ckdir / f'epoch-{start_epoch:04d}'}")

    t0 = time.perf_counter()
    train_time = float(state["train_time_s"]) if state is not None else 0.0
    epoch = start_epoch
    epoch_bar = tqdm(range(start_epoch + 1, epochs + 1), desc="train epochs", unit="epoch", file=sys.stderr,
                     disable=None, mininterval=2.0)
    for epoch in epoch_bar:
        if stopped:
            break
        model.train()
        t_epoch = time.perf_counter()
        running, seen = 0.0, 0
        bar = tqdm(M.train_batches(lengths, tp.batch_size, params.seed, epoch), desc=f"train epoch {epoch}/{epochs}",
                   unit="batch", file=sys.stderr, disable=None, leave=False, mininterval=2.0)
        for b in bar:
            batch = {k: v.to(dev) for k, v in M.collate([ids_tr[i] for i in b], pad_id).items()}
            y = torch.as_tensor(y_tr[b], device=dev)
            w = torch.as_tensor(w_tr[b], device=dev)
            logits = model(**batch).logits.float()
            loss = (F.cross_entropy(logits, y, reduction="none") * w).sum() / w.sum().clamp_min(1e-8)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            running += float(loss.detach()) * len(b)
            seen += len(b)
            bar.set_postfix(loss=f"{running / seen:.4f}", refresh=False)
        bar.close()
        p_va = M.predict_ids(model, ids_va, pad_id, tp.eval_batch_size, dev)
        val_auc = binary_metrics(va.labels, p_va, 0.5)["pr_auc"]
        train_time += time.perf_counter() - t_epoch
        train_loss = running / max(seen, 1)
        entry = {"epoch": epoch, "train_loss": round(train_loss, 6), "val_pr_auc": val_auc}
        if best["epoch"] > 0 and diverged(history, train_loss, val_auc, best["pr_auc"], tp.divergence_loss_ratio):
            # undo the epoch: best weights back, fresh Adam moments, a smaller learning rate for the rest of the
            # schedule (scaling the scheduler's base rates keeps checkpoint/resume exact); not an early-stopping strike
            _load_trainable(model, best_state)
            opt.state.clear()
            f = tp.divergence_lr_factor
            sched.base_lrs = [lr * f for lr in sched.base_lrs]
            for g, lr in zip(opt.param_groups, sched.get_last_lr()):
                g["lr"] = lr * f
            scale = min([h["lr_scale"] for h in history if h.get("rolled_back")] + [1.0]) * f
            entry.update({"rolled_back": True, "lr_scale": round(scale, 6)})
            history.append(entry)
            echo(f"epoch {epoch}/{epochs}: loss {train_loss:.4f}, validation PR-AUC {val_auc:.4f}: diverged (loss "
                 f"above {tp.divergence_loss_ratio}x the last good epoch's); back to epoch {best['epoch']}'s weights, "
                 f"learning rate x{scale:g}")
        else:
            history.append(entry)
            if val_auc > best["pr_auc"] + 1e-6:
                best, bad = {"epoch": epoch, "pr_auc": val_auc}, 0
                best_state = _trainable_state(model)
            else:
                bad += 1
            stopped = bad >= tp.early_stopping_patience and epoch < epochs
            echo(f"epoch {epoch}/{epochs}: loss {train_loss:.4f}, validation PR-AUC {val_auc:.4f}"
                 f"{' (best)' if best['epoch'] == epoch else ''}{'; early stop' if stopped else ''}")
        with atomic_dir(ckdir / f"epoch-{epoch:04d}") as tmp, M.quiet_transformers():
            model.save_pretrained(tmp / "adapter")
            torch.save({"fingerprint": fingerprint, "epoch": epoch, "trainable": _trainable_state(model),
                        "best_trainable": best_state, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                        "history": history, "best": best, "bad_epochs": bad,
                        "stopped": stopped, "train_time_s": train_time, "learning_rate": lr, "lr_sweep": sweep},
                       tmp / "state.pt")
    epoch_bar.close()
    epochs_run = history[-1]["epoch"] if history else 0

    # best epoch -> threshold on validation -> test
    _load_trainable(model, best_state)
    p_va = M.predict_ids(model, ids_va, pad_id, tp.eval_batch_size, dev)
    p_te = M.predict_ids(model, ids_te, pad_id, tp.eval_batch_size, dev)
    threshold = choose_threshold(va.labels, p_va)
    m_va, m_te = binary_metrics(va.labels, p_va, threshold), binary_metrics(te.labels, p_te, threshold)

    provenance = {
        "stage": "train",
        "base_model": tp.base_model,
        "base_model_name": M.base_model_label(tp.base_model),
        "train_params": tp.model_dump(mode="json"),
        "seed": params.seed,
        "params_digest": params.digest(),
        "qlora": {"used": use_q, "reason": q_why},
        "device": str(dev),
        "learning_rate": lr,
        "epochs": epochs,
        "max_length": tp.max_length,
        "pooling": pooling,
        "threshold": threshold,
        "labels": dict(M.LABELS),
        "data_version": dv,
        "upstream_gate": gate,
        "git": git_info(),
        "library_versions": library_versions(),
    }
    # no machine-specific path in adapter_config.json: the base is named as configured ("bundled" or a hub id)
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = tp.base_model if tp.base_model == "bundled" else M.base_model_label(tp.base_model)
    with atomic_dir(out / "adapter") as tmp, M.quiet_transformers():
        model.save_pretrained(tmp, save_embedding_layers=False)  # LoRA never targets the embeddings here
        _tidy_adapter(tmp, provenance["base_model_name"])
        write_json(tmp / PROVENANCE_FILE, provenance)
    merge_diff = _write_merged(out, base_path, tokenizer, model if not use_q else None, ids_va[:16], pad_id,
                               provenance)

    rows = pr_curve_table(te.labels, p_te)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_csv(out / "plots" / "pr_curve.csv", rows, ["recall", "precision", "threshold"])
    plot_pr_curve(rows, out / "plots" / "pr_curve.png", f"test PR curve (AP {m_te['pr_auc']:.3f})")

    metrics = {
        "validation": m_va,
        "test": m_te,
        "threshold": threshold,
        "val_pr_auc": m_va["pr_auc"],
        "test_pr_auc": m_te["pr_auc"],
        "test_f1": m_te["f1"],
        "test_recall_at_1pct_fpr": m_te["recall_at_1pct_fpr"],
        "test_roc_auc": m_te["roc_auc"],
        "training_time_s": round(train_time, 1),
        "stage_time_s": round(time.perf_counter() - t0, 1),
        "epochs_run": epochs_run,
        "best_epoch": best["epoch"],
        "stopped_early": bool(stopped),
        "rolled_back_epochs": [h["epoch"] for h in history if h.get("rolled_back")],
        "resumed_from_epoch": resumed_from,
        "history": history,
        "trainable_params": trainable_n,
        "total_params": total_n,
        "loss_weighting": weighting,
        "qlora": use_q,
        "merge_max_abs_diff": merge_diff,
        "n_train": len(ids_tr),
        "learning_rate": lr,
        "lr_sweep": sweep,
        "threads": threads,
    }
    counts = {}
    for name, sd, idx in (("train", tr, tr_idx), ("validation", va, None), ("test", te, None)):
        labels = sd.labels if idx is None else sd.labels[idx]
        srcs = sd.sources if idx is None else [sd.sources[i] for i in idx]
        by: dict[str, int] = {}
        for s in srcs:
            by[s] = by.get(s, 0) + 1
        counts[name] = {"n": int(len(labels)), "n_fraud": int(labels.sum()), "by_source": dict(sorted(by.items()))}
    metrics["counts"] = counts
    train_args = {k: provenance[k] for k in ("train_params", "seed", "params_digest", "base_model", "qlora",
                                             "device", "data_version", "git", "library_versions")}
    train_args["fingerprint"] = fingerprint
    write_json(out / "training_args.json", train_args)
    write_text(out / "model_card.md", model_card(provenance=provenance, metrics=metrics, counts=counts))
    write_ledger_or_fail(ledger_for("train", splits, used), out)
    write_metrics(out, TrainMetrics.model_validate(metrics))
    echo(f"done: test PR-AUC {m_te['pr_auc']:.4f}, F1 {m_te['f1']:.4f} at threshold {threshold:.3f}; "
         f"{epochs_run} epoch(s) in {train_time:.0f} s")
    return metrics


def _write_merged(out: Path, base_path: str, tokenizer, live_model, probe_ids: list[list[int]], pad_id: int,
                  provenance: dict[str, Any]) -> Optional[float]:
    """Reload the fp32 base on CPU, apply the saved adapter, merge, save with the tokenizer. Returns the largest
    logit difference between the merged model and the live LoRA model on a few validation records (None with
    QLoRA, whose 4-bit base legitimately differs)."""
    import torch
    from peft import PeftModel

    torch.manual_seed(0)  # the head is overwritten by the adapter's saved copy; seed only for tidiness
    base = M.load_classifier(base_path, pooling=provenance["pooling"])
    with M.quiet_transformers():
        merged = PeftModel.from_pretrained(base, str(out / "adapter")).merge_and_unload()
    merged.eval()
    diff = None
    if live_model is not None and probe_ids:
        batch = M.collate(probe_ids, pad_id)
        live_model.eval()
        with torch.inference_mode():
            a = live_model(**{k: v.to(next(live_model.parameters()).device) for k, v in batch.items()}).logits.cpu()
            b = merged(**batch).logits
        diff = float((a - b).abs().max())
        if diff > 1e-3:
            raise GateError(f"{out}/merged: merged model disagrees with the LoRA model (max logit diff {diff:.2e})")
    with atomic_dir(out / "merged") as tmp:
        M.save_classifier(merged, tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / PROVENANCE_FILE, provenance)
    return diff
