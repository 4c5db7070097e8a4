"""Artifacts beside the models: plots (PNG + CSV for `dvc plots`), the model card, the compression table."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

from pipeline.io import atomic_path, write_text


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    write_text(path, buf.getvalue())


def _savefig(fig, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})


def plot_pr_curve(rows: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    if rows:
        ax.plot([r["recall"] for r in rows], [r["precision"] for r in rows], drawstyle="steps-post")
    ax.set_xlabel("recall (fraud)")
    ax.set_ylabel("precision (fraud)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _savefig(fig, path)
    plt.close(fig)


def plot_size_vs_pr_auc(variants: list[dict[str, Any]], chosen: Optional[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for v in variants:
        if v.get("pr_auc") is None:
            continue
        marker = "*" if v["name"] == chosen else ("s" if v.get("kind") == "baseline" else "o")
        ax.scatter(v["size_mb"], v["pr_auc"], marker=marker, s=140 if marker == "*" else 40)
        ax.annotate(v["name"], (v["size_mb"], v["pr_auc"]), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("size on disk (MB, log scale)")
    ax.set_ylabel("test PR-AUC")
    ax.set_title("size vs PR-AUC (star = chosen)")
    ax.grid(alpha=0.3)
    _savefig(fig, path)
    plt.close(fig)


def _fmt(x: Any, nd: int = 3) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def model_card(*, provenance: dict[str, Any], metrics: dict[str, Any], counts: dict[str, Any]) -> str:
    """Markdown model card: intended use, data, training, metrics, limitations."""
    tp = provenance["train_params"]
    val, test = metrics["validation"], metrics["test"]
    lines = [
        "# fraudslm fraud classifier (LoRA fine-tune)",
        "",
        "## Intended use",
        "Scores free-text finance records (transaction descriptions, chats, emails, case notes, alert reasons) for",
        "fraud risk, to **prioritise human review**. It is not meant to block customers or decide cases on its own.",
        "Input must be anonymized the same way as the training data (the `fraudslm anonymize` stage): the model never",
        "saw raw personal data and must not be fed any.",
        "",
        "## Model",
        f"- base model: `{tp['base_model']}` ({provenance['base_model_name']}), new 2-class head (legit / fraud)",
        (f"- LoRA: r={tp['lora_r']}, alpha={tp['lora_alpha']}, dropout={tp['lora_dropout']}, targets "
         f"{tp['target_modules']}" if tp.get('peft_method', 'lora') == 'lora' else
         "- IA3: learned scaling vectors on key, value and the feed-forward output")
        + f", layers: {'all' if tp['top_k_layers'] is None else 'top ' + str(tp['top_k_layers'])}"
        f"; head trained in full",
        f"- head input: {'masked mean of the last hidden states' if provenance.get('pooling') == 'mean' else 'the architecture default ([CLS] pooler)'}"
        f" (`train.pooling: {provenance.get('pooling', 'cls')}`)",
        "- text preprocessing: each anonymization placeholder is reduced to its type in words before tokenization "
        "(a PERSON pseudonym becomes the word `person`; `pipeline.train.model.model_text`); callers of the exported "
        "ONNX model must do the same",
        f"- QLoRA: {provenance['qlora']['reason']}",
        f"- trainable parameters: {metrics['trainable_params']:,} of {metrics['total_params']:,}",
        f"- max_length {tp['max_length']} tokens, batch {tp['batch_size']}, lr {provenance.get('learning_rate', tp['learning_rate'])}"
        + (" (rule on the step count)" if tp['learning_rate'] == "auto" else " (validation sweep)"
           if tp['learning_rate'] == "sweep" else "") + ", "
        f"epochs run {metrics['epochs_run']} of {provenance.get('epochs', tp['epochs'])} (best epoch {metrics['best_epoch']}, early stopping on "
        f"validation PR-AUC, patience {tp['early_stopping_patience']})",
        *([f"- diverged epochs undone (best weights restored, learning rate x{tp['divergence_lr_factor']} each): "
           f"{metrics['rolled_back_epochs']}"] if metrics.get("rolled_back_epochs") else []),
        f"- loss weighting: {metrics['loss_weighting']}",
        f"- decision threshold {_fmt(metrics['threshold'], 4)} (chosen on validation to maximise F1)",
        "",
        "## Data",
        f"- dataset version: `{provenance['data_version'].get('dataset_sha256', 'unknown')[:16]}`"
        + (f" (card version {provenance['data_version']['card_version']})"
           if provenance["data_version"].get("card_version") else ""),
        f"- anonymize gate: passed (key fingerprint `{provenance['upstream_gate'].get('key_fingerprint', 'n/a')}`)",
    ]
    for split, c in counts.items():
        lines.append(f"- {split}: {c['n']} records, {c['n_fraud']} fraud; by source {c['by_source']}")
    lines += [
        "",
        "## Metrics",
        "| split | PR-AUC | ROC-AUC | F1 @ threshold | precision | recall | recall @ 1% FPR |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in (("validation", val), ("test", test)):
        lines.append(f"| {name} | {_fmt(m['pr_auc'])} | {_fmt(m['roc_auc'])} | {_fmt(m['f1'])} | "
                     f"{_fmt(m['precision'])} | {_fmt(m['recall'])} | {_fmt(m['recall_at_1pct_fpr'])} |")
    lines += [
        "",
        f"Trained on {provenance['device']}; the training time and thread count of this run are in "
        "`timings.json` (they differ between identical runs, so they are kept out of this card).",
        "",
        "## Limitations",
        "- Trained on the data named above only; on the embedded demo that data is synthetic and its fraud patterns "
        "are templated, so demo scores overstate what real data would give.",
        "- Anonymization replaces names, card numbers, IBANs and similar values with keyed pseudonyms or redaction "
        "tags: the model cannot and should not use them, and inputs anonymized with another key or policy shift "
        "the input distribution.",
        "- The threshold is tuned on validation at the split's class balance (train may be rebalanced); "
        "re-tune it for a different fraud prevalence.",
        "- Texts beyond max_length tokens are truncated.",
        "- Not evaluated for fairness across customer groups; do not use for automated adverse decisions.",
        "",
        "## Provenance",
        f"- git: `{provenance['git']['git_sha']}`" + (" (dirty)" if provenance["git"].get("git_dirty") else ""),
        f"- params digest: `{provenance['params_digest'][:16]}`",
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in provenance["library_versions"].items()),
        "",
    ]
    return "\n".join(lines)


def compression_table(variants: list[dict[str, Any]], chosen: Optional[str], notes: list[str]) -> str:
    ref = next((v for v in variants if v["name"] == "fp32"), None)
    lines = [
        "# Compression: size, latency and accuracy on the test split",
        "",
        "| variant | size MB | x smaller | params | p50 ms (b1) | p95 ms (b1) | x faster (b1) | texts/s (b32) | "
        "PR-AUC | PR-AUC vs fp32 | F1 | recall @ 1% FPR |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for v in variants:
        name = f"**{v['name']}** (chosen)" if v["name"] == chosen else v["name"]
        ratio = _fmt(ref["size_mb"] / v["size_mb"], 2) if ref and v["size_mb"] else "n/a"
        speed = _fmt(ref["latency_p50_ms"] / v["latency_p50_ms"], 2) if ref and v["latency_p50_ms"] else "n/a"
        drop = _fmt(v["pr_auc"] - ref["pr_auc"], 4) if ref and v["pr_auc"] is not None and ref["pr_auc"] is not None \
            else "n/a"
        lines.append(
            f"| {name} | {_fmt(v['size_mb'], 1)} | {ratio} | {v['params']:,} | {_fmt(v['latency_p50_ms'], 2)} | "
            f"{_fmt(v['latency_p95_ms'], 2)} | {speed} | {_fmt(v['throughput_b32'], 1)} | {_fmt(v['pr_auc'], 4)} | "
            f"{drop} | {_fmt(v['f1'])} | {_fmt(v['recall_at_1pct_fpr'])} |")
    lines += ["", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)
