"""train + compress on a tiny hand-made split folder: real model (bundled MiniLM), real peft, real onnxruntime.

Kept small (max_length 32, a few dozen records, 1-2 epochs) so the whole file runs in about a minute on 2 cores."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_params
from pipeline.errors import ConfigError, GateError

FRAUD = [
    "Customer <PERSON_{h}> reports a card-not-present charge of {a} EUR at an unknown merchant; card <CREDIT_CARD_{h}> "
    "was used from a new device and IP <IP_ADDRESS_{h}>.",
    "Urgent: your account is locked, confirm your IBAN <IBAN_CODE_{h}> and one-time code to release {a} GBP today.",
    "Dispute: I did not authorise the transfer of {a} USD to <US_BANK_NUMBER_{h}>, someone phoned pretending to be "
    "the bank.",
    "Alert: {a} EUR gift-card purchases in quick succession, customer <PERSON_{h}> says the card was stolen.",
]
LEGIT = [
    "Monthly grocery payment of {a} EUR at the usual supermarket, card <CREDIT_CARD_{h}> present, PIN verified.",
    "Customer <PERSON_{h}> asks how to update the postal address on the account; no transaction involved.",
    "Salary credit of {a} GBP received from employer, standing order unchanged.",
    "Thanks for the quick help with my statement, the {a} USD refund arrived as expected.",
]
SOURCES = ["transactions", "chats", "emails", "case_notes"]


def _records(n: int, seed: int, fraud_share: float) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        fraud = rng.random() < fraud_share
        tpl = rng.choice(FRAUD if fraud else LEGIT)
        text = tpl.format(h=f"{rng.getrandbits(24):06x}", a=f"{rng.uniform(5, 900):.2f}")
        out.append({"record_id": f"{seed:02d}{i:05d}", "source": rng.choice(SOURCES), "group_id": f"g{i % 17}",
                    "text": text, "label": int(fraud)})
    return out


def make_splits(folder: Path, n_train: int = 48, n_eval: int = 24, gate: dict | None = None) -> Path:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    feats = Features({"record_id": Value("string"), "source": Value("string"), "group_id": Value("string"),
                      "text": Value("string"), "label": ClassLabel(names=["legit", "fraud"])})
    parts = {"train": _records(n_train, 1, 0.4), "validation": _records(n_eval, 2, 0.3),
             "test": _records(n_eval, 3, 0.3)}
    dd = DatasetDict({k: Dataset.from_list(v, features=feats) for k, v in parts.items()})
    folder.mkdir(parents=True, exist_ok=True)
    dd.save_to_disk(str(folder / "dataset"))
    # the split stage's test.parquet carries the per-segment evaluation columns (split.segment_columns)
    import pandas as pd

    rng = random.Random(4)
    test = pd.DataFrame(parts["test"])
    test["channel"] = [rng.choice(["pos", "online"]) if s == "transactions" else None for s in test["source"]]
    test["amount"] = [round(rng.uniform(5, 2000), 2) if s == "transactions" else None for s in test["source"]]
    test["iban_country"] = [rng.choice(["GB", "DE", None]) for _ in range(len(test))]
    test["phone_country"] = [rng.choice(["US", None]) for _ in range(len(test))]
    test.to_parquet(folder / "test.parquet", index=False)
    gate = {"passed": True, "key_fingerprint": "abc123def456", "residual": {}} if gate is None else gate
    (folder / "metrics.json").write_text(json.dumps({"upstream_gate": gate}))
    (folder / "provenance.json").write_text(json.dumps({"stage": "split", "gate": gate}))  # the gate passport
    (folder / "README.md").write_text("# tiny test dataset\n\nversion: test-1\n")
    return folder


TINY = {"train.max_length": 32, "train.epochs": 1, "train.batch_size": 16, "train.eval_batch_size": 32,
        "train.threads": 1, "train.learning_rate": 0.002, "compress.latency_runs": 2, "compress.distill_epochs": 1,
        "compress.batch_size": 16, "compress.threads": 1, "compress.recovery_steps": 2, "compress.keep_variants": True}


def tiny_params(**extra):
    return load_params(None, {**TINY, **extra})


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> Path:
    return make_splits(tmp_path_factory.mktemp("tiny") / "05_splits")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits) -> dict:
    from pipeline.train import run_train

    out = tmp_path_factory.mktemp("lora") / "lora"
    metrics = run_train(splits, out, tiny_params(**{"train.epochs": 2}))
    return {"out": out, "metrics": metrics}


# ---------------------------------------------------------------------------------------------------------------
# gate and input checks (no model needed)


def test_refuses_without_provenance(tmp_path):
    from pipeline.train import run_train

    folder = make_splits(tmp_path / "s", 8, 8)
    (folder / "provenance.json").unlink()
    with pytest.raises(GateError, match="anonymize gate"):
        run_train(folder, tmp_path / "out", tiny_params())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gate", [{"passed": False, "residual": {"PERSON": 2}}, {"residual": {}}, "yes"])
def test_refuses_failed_or_missing_gate(tmp_path, gate):
    from pipeline.train import run_compress, run_train

    folder = make_splits(tmp_path / "s", 8, 8, gate=gate)
    with pytest.raises(GateError):
        run_train(folder, tmp_path / "out", tiny_params())
    with pytest.raises(GateError):
        run_compress(tmp_path / "lora", folder, tmp_path / "c", tiny_params())


def test_gate_passport_comes_from_the_splits_provenance(tmp_path):
    """The passport is the split folder's provenance.json (issue 23: no guessing another stage's folder)."""
    from pipeline.train.data import check_upstream_gate

    folder = make_splits(tmp_path / "05_splits", 8, 8)
    assert check_upstream_gate(folder) == {"key_fingerprint": "abc123def456", "passed": True, "residual": {}}
    (folder / "provenance.json").write_text(json.dumps({"stage": "split", "gate": {"passed": False,
                                                                                  "residual": {"IBAN_CODE": 1}}}))
    with pytest.raises(GateError, match="provenance.json"):
        check_upstream_gate(folder)
    (folder / "provenance.json").write_text("{not json")
    with pytest.raises(GateError, match="unreadable provenance"):
        check_upstream_gate(folder)


def test_cli_gate_refusal_exit_code(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    folder = make_splits(tmp_path / "s", 8, 8, gate={"passed": False})
    res = CliRunner().invoke(app, ["train", "--in", str(folder), "--out", str(tmp_path / "o"), "--params",
                                   str(Path(__file__).resolve().parent.parent / "params.yaml")])
    assert res.exit_code == 1
    assert "not on record as passed" in res.output and "Traceback" not in res.output


def test_missing_dataset_is_config_error(tmp_path):
    from pipeline.train import run_train

    folder = make_splits(tmp_path / "s", 8, 8)
    shutil.rmtree(folder / "dataset")
    with pytest.raises(ConfigError, match="DatasetDict not found"):
        run_train(folder, tmp_path / "out", tiny_params())


def test_metrics_helpers():
    from pipeline.train.metrics import binary_metrics, choose_threshold, recall_at_fpr

    y = np.array([0] * 200 + [1] * 20)
    p = np.concatenate([np.linspace(0, 0.5, 200), np.linspace(0.45, 1.0, 20)])
    t = choose_threshold(y, p)
    m = binary_metrics(y, p, t)
    assert 0.5 < t < 0.51 and m["recall"] == pytest.approx(18 / 20) and m["precision"] == 1.0 and m["pr_auc"] > 0.9
    assert recall_at_fpr(y, p, 0.01) == pytest.approx(18 / 20)
    assert binary_metrics(np.zeros(5, int), np.zeros(5), 0.5)["pr_auc"] is None


def test_segment_values_and_warnings():
    """issue 21: segments by source, a column, region (account country, else card, else phone) and amount band;
    a segmentation without data is skipped with its reason; a segment whose recall interval lies below the overall
    recall is warned about, named with its segmentation."""
    from pipeline.train.metrics import NO_VALUE, amount_band, segment_metrics, segment_values

    assert [amount_band(x, [50, 250, 1000]) for x in (0, 50, 249.99, 250, 1000, 5e6, None, "n/a", float("nan"))] == \
        ["<50", "50-250", "50-250", "250-1000", ">=1000", ">=1000", NO_VALUE, NO_VALUE, NO_VALUE]
    cols = {"amount": [10.0, None, 300.0, 2000.0], "channel": ["pos", None, "chat", "pos"],
            "iban_country": [None, "GB", None, "DE"], "card_bin_country": [None, None, "FR", "IT"],
            "phone_country": ["US", "US", "US", None], "rule": [None, None, None, None]}
    vals, skipped = segment_values(cols, ["source", "channel", "region", "amount_band", "rule", "merchant"],
                                   [50, 250, 1000], ["tx", "chats", "tx", "tx"])
    assert vals == {"source": ["tx", "chats", "tx", "tx"], "channel": ["pos", NO_VALUE, "chat", "pos"],
                    "region": ["US", "GB", "FR", "DE"], "amount_band": ["<50", NO_VALUE, "250-1000", ">=1000"]}
    assert set(skipped) == {"rule", "merchant"} and "no test record" in skipped["rule"]
    assert set(segment_values({}, ["region", "amount_band"], [50], ["a"])[1]) == {"region", "amount_band"}

    y = np.array([1] * 20 + [0] * 80 + [1] * 20 + [0] * 80)
    p = np.concatenate([np.full(20, 0.9), np.full(80, 0.1), np.full(20, 0.2), np.full(80, 0.1)])
    p[120:130] = 0.05  # segment b: fraud scored at or below its legit records
    seg = ["a"] * 100 + ["b"] * 100
    r = segment_metrics(y, p, seg, 0.5, n_boot=200, seed=1, dimension="channel")
    assert r["overall_recall"] == 0.5 and r["segments"]["a"]["recall"] == 1.0 and r["segments"]["b"]["recall"] == 0.0
    assert r["segments"]["b"]["recall_below_overall"] and not r["segments"]["a"]["recall_below_overall"]
    assert r["warnings"] == [w for w in r["warnings"] if w.startswith("segment channel=b: recall 0.000")] != []
    assert segment_metrics(y, p, seg, 0.5, n_boot=50)["warnings"][0].startswith("segment b: ")
    # recall's interval is Wilson's: 0 of 20 caught reaches about 0.16, and one missed fraud record alone is never
    # "significantly below" (a bootstrap interval would collapse to [0, 0] there)
    assert r["segments"]["b"]["recall_ci"] == [0.0, pytest.approx(0.161, abs=1e-3)]
    assert r["segments"]["a"]["recall_ci"] == [pytest.approx(0.839, abs=1e-3), 1.0]
    y1 = np.array([1] * 20 + [0] * 80 + [1, 0, 0])
    p1 = np.concatenate([np.full(10, 0.9), np.full(10, 0.2), np.full(80, 0.1), [0.1, 0.05, 0.05]])  # overall ~0.48
    r1 = segment_metrics(y1, p1, ["a"] * 100 + ["c"] * 3, 0.5, n_boot=50)
    assert r1["segments"]["c"]["recall"] == 0.0 and r1["segments"]["c"]["recall_ci"][1] > 0.75
    assert not r1["segments"]["c"]["recall_below_overall"] and r1["warnings"] == []


def test_qlora_falls_back_on_cpu():
    import torch

    from pipeline.train.model import resolve_qlora

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    use, why = resolve_qlora(True)
    assert use is False and "fell back" in why
    assert resolve_qlora("auto")[0] is False and resolve_qlora(False)[0] is False


def test_top_k_layers_limits_lora():
    from pipeline.train import model as M

    p = tiny_params(**{"train.top_k_layers": 2})
    base = M.load_classifier(M.resolve_base_model("bundled"))
    pm = M.apply_lora(base, M.lora_config(p.train, M.n_layers(base)))
    lora_layers = {int(n.split("encoder.layer.")[1].split(".")[0]) for n, _ in pm.named_parameters()
                   if "lora_" in n and "encoder.layer." in n}
    assert lora_layers == {4, 5}
    assert any("classifier" in n and q.requires_grad for n, q in pm.named_parameters())
    with pytest.raises(ConfigError, match="top_k_layers"):
        M.lora_config(tiny_params(**{"train.top_k_layers": 9}).train, 6)


# ---------------------------------------------------------------------------------------------------------------
# train, resume, compress


def test_train_outputs(trained, splits):
    out, m = trained["out"], trained["metrics"]
    for rel in ("adapter/adapter_config.json", "merged/config.json", "merged/model.safetensors", "merged/fraudslm.json",
                "training_args.json", "model_card.md", "metrics.json", "ledger.json", "plots/pr_curve.png",
                "plots/pr_curve.csv", "checkpoints/epoch-0001/state.pt", "checkpoints/epoch-0002/adapter"):
        assert (out / rel).exists(), rel
    saved = json.loads((out / "metrics.json").read_text())
    for split in ("validation", "test"):
        for k in ("pr_auc", "roc_auc", "f1", "recall_at_1pct_fpr", "threshold"):
            assert k in saved[split]
    timings = json.loads((out / "timings.json").read_text())  # volatile figures live beside metrics.json
    assert saved["epochs_run"] == 2 and timings["training_time_s"] >= 0
    assert m["merge_max_abs_diff"] is not None and m["merge_max_abs_diff"] < 1e-3
    # the head reads the masked mean of the last hidden states (train.pooling: mean); the merged model says so and
    # loads back with that head
    cfg = json.loads((out / "merged" / "config.json").read_text())
    assert cfg["fraudslm_pooling"] == "mean" and cfg["architectures"] == ["MeanPoolBertForSequenceClassification"]
    # Hugging Face loading: custom model type + auto_map + the code in the folder (tests/test_predict.py loads it)
    assert cfg["model_type"] == "fraudslm_bert" and "AutoModelForSequenceClassification" in cfg["auto_map"]
    assert (out / "merged" / "modeling_fraudslm.py").is_file()
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == "bundled"
    from pipeline.train import model as M

    assert type(M.load_pretrained_classifier(str(out / "merged"))).__name__ == "MeanPoolBertForSequenceClassification"
    ledger = json.loads((out / "ledger.json").read_text())
    assert ledger["balanced"] and ledger["totals"]["read"] == 48 + 24 + 24
    args = json.loads((out / "training_args.json").read_text())
    assert args["git"]["git_sha"] and args["data_version"]["card_version"] == "test-1"
    assert {"torch", "transformers", "peft", "datasets"} <= set(args["library_versions"])
    card = (out / "model_card.md").read_text()
    assert "Intended use" in card and "Limitations" in card
    # no record text in any JSON/markdown output
    blob = " ".join(p.read_text() for p in [out / "metrics.json", out / "ledger.json", out / "model_card.md"])
    assert "<PERSON_" not in blob and "supermarket" not in blob


def test_resume_from_checkpoint_matches_uninterrupted(trained, splits, tmp_path):
    """Simulate a run killed after epoch 1: only the epoch-1 checkpoint survives. The rerun resumes from it and
    ends with exactly the adapter an uninterrupted run produced."""
    from safetensors.torch import load_file

    from pipeline.train import run_train

    out = tmp_path / "lora"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(trained["out"] / "checkpoints" / "epoch-0001", out / "checkpoints" / "epoch-0001")
    m = run_train(splits, out, tiny_params(**{"train.epochs": 2}))
    assert m["resumed_from_epoch"] == 1 and m["epochs_run"] == 2
    a = load_file(trained["out"] / "adapter" / "adapter_model.safetensors")
    b = load_file(out / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert m["test"]["pr_auc"] == trained["metrics"]["test"]["pr_auc"]


def test_stale_checkpoints_are_ignored(trained, splits, tmp_path):
    from pipeline.train import run_train

    out = tmp_path / "lora"
    shutil.copytree(trained["out"] / "checkpoints", out / "checkpoints")
    m = run_train(splits, out, tiny_params(**{"train.learning_rate": 0.001}))  # other params: fresh start
    assert m["resumed_from_epoch"] is None and m["epochs_run"] == 1
    assert not (out / "checkpoints" / "epoch-0002").exists()


def test_compress_end_to_end(trained, splits, tmp_path):
    from pipeline.train import run_compress
    from pipeline.train.predict import load_variant

    out = tmp_path / "compressed"
    m = run_compress(trained["out"], splits, out, tiny_params())
    names = [v["name"] for v in m["variants"]]
    assert names == ["fp32", "int8", "pruned", "pruned_int8", "distilled", "distilled_int8", "onnx_fp32", "onnx_int8",
                     "baseline_tfidf_lr"]
    saved = json.loads((out / "metrics.json").read_text())
    for v in m["variants"]:  # the full document (timings.json holds the latency figures beside metrics.json)
        for k in ("name", "size_mb", "params", "latency_p50_ms", "latency_p95_ms", "throughput_b32", "pr_auc", "f1",
                  "recall_at_1pct_fpr"):
            assert k in v, (v["name"], k)
        assert v["size_mb"] > 0 and v["latency_p50_ms"] > 0 and v["throughput_b32"] > 0
    assert {v["name"] for v in saved["variants"]} == set(names) and "latency_p50_ms" not in saved["variants"][0]
    by = {v["name"]: v for v in saved["variants"]}
    assert by["fp32"]["size_mb"] / by["int8"]["size_mb"] > 3.5
    assert by["fp32"]["size_mb"] / by["onnx_int8"]["size_mb"] > 3.5
    assert by["distilled"]["params"] < by["fp32"]["params"]
    assert 0.29 <= by["pruned"]["sparsity"] <= 0.31
    assert saved["chosen"] in by and saved["onnx_max_abs_diff"] < 1e-2
    assert (out / "compression_table.md").read_text().count("|") > 50
    for rel in ("plots/size_vs_pr_auc.png", "plots/size_vs_pr_auc.csv", "ledger.json", "chosen/variant.json"):
        assert (out / rel).exists(), rel
    assert json.loads((out / "ledger.json").read_text())["balanced"]
    # the chosen artifact loads on its own and scores like the table says it does
    pred = load_variant(out / "chosen")
    p = pred.predict_proba(["Urgent: confirm your IBAN <IBAN_CODE_0a1b2c> and one-time code to release 50 GBP.",
                            "Salary credit of 1200.00 GBP received from employer."])
    assert p.shape == (2,) and np.all((p >= 0) & (p <= 1))
    # the int8 artifact round-trips from disk
    assert load_variant(out / "variants" / "int8").predict_proba(["hello"]).shape == (1,)
    # per-segment evaluation of the chosen variant on test (issue 21): every configured segmentation, each one
    # partitioning the test split; the model card and variant.json carry them
    sb = saved["segments_by"]
    assert set(sb["dimensions"]) == {"source", "channel", "region", "amount_band"} and sb["skipped"] == {}
    n_test = saved["n_test"]
    for dim, block in sb["dimensions"].items():
        assert sum(r["n"] for r in block["segments"].values()) == n_test, dim
    assert sb["dimensions"]["source"]["segments"] == saved["segments"]["segments"]  # the per-source form, kept
    assert set(sb["dimensions"]["channel"]["segments"]) <= {"pos", "online", "(none)"}
    assert set(sb["dimensions"]["region"]["segments"]) <= {"GB", "DE", "US", "(none)"}
    card = (out / "chosen" / "README.md").read_text()
    assert "Per channel on test" in card and "Per amount band on test" in card and "| >=1000 |" in card
    assert json.loads((out / "chosen" / "variant.json").read_text())["segments_by"]["dimensions"].keys() == \
        sb["dimensions"].keys()


def test_compress_refuses_other_dataset(trained, tmp_path):
    from pipeline.train import run_compress

    other = make_splits(tmp_path / "other", 10, 10)
    with pytest.raises(ConfigError, match="differs from the dataset"):
        run_compress(trained["out"], other, tmp_path / "c", tiny_params())


def test_divergence_rule():
    from pipeline.train.trainer import diverged

    hist = [{"train_loss": 0.4, "val_pr_auc": 0.9}]
    assert diverged(hist, 0.91, 0.23, 0.9, 1.5)  # SMS seed-1 run at lr 3e-3: loss 0.39 -> 0.91, PR-AUC 0.90 -> 0.23
    assert not diverged(hist, 0.5, 0.5, 0.9, 1.5)  # loss up, but not past the ratio
    assert not diverged(hist, 0.91, 0.95, 0.9, 1.5)  # validation improved: not undone
    assert not diverged(hist, 0.91, 0.23, 0.9, None)  # guard disabled
    assert diverged(hist, float("nan"), 0.2, 0.9, 1.5)
    # compared against the last epoch that was kept, not a rolled-back one
    hist2 = hist + [{"train_loss": 9.0, "val_pr_auc": 0.2, "rolled_back": True}]
    assert diverged(hist2, 0.7, 0.5, 0.9, 1.5) and not diverged(hist2, 0.5, 0.5, 0.9, 1.5)


def test_diverging_epochs_are_rolled_back(splits, tmp_path):
    """At an absurd learning rate the loss explodes after epoch 1: each such epoch is undone (epoch-1 weights back,
    learning rate halved each time), the model that comes out is epoch 1's, and a run killed after a rolled-back
    epoch resumes to the same adapter."""
    import torch
    from safetensors.torch import load_file

    from pipeline.train import run_train

    p = tiny_params(**{"train.epochs": 3, "train.learning_rate": 1.0})
    out = tmp_path / "lora"
    m = run_train(splits, out, p)
    assert m["rolled_back_epochs"] == [2, 3] and m["best_epoch"] == 1
    assert [h.get("lr_scale") for h in m["history"]] == [None, 0.5, 0.25]
    ep1 = torch.load(out / "checkpoints" / "epoch-0001" / "state.pt", weights_only=True)["trainable"]
    final = load_file(out / "adapter" / "adapter_model.safetensors")
    lora_a = [v for k, v in ep1.items() if "lora_A" in k]
    assert lora_a and all(any(torch.equal(v, w) for w in final.values()) for v in lora_a)  # epoch 1's own tensors
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copytree(out / "checkpoints" / "epoch-0002", resumed / "checkpoints" / "epoch-0002")
    m2 = run_train(splits, resumed, p)
    assert m2["resumed_from_epoch"] == 2 and m2["history"] == m["history"]
    a, b = final, load_file(resumed / "adapter" / "adapter_model.safetensors")
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def test_chosen_variant_rule():
    """The SMS benchmark's table, now read on VALIDATION: the budget alone picks distilled_int8 (below the
    baseline); with the baseline floor the smallest eligible variant that reaches the baseline (onnx_int8) ships.
    Test figures (`pr_auc`) never enter the choice."""
    from pipeline.train.compress import choose_variant, choose_variant_explained

    def v(name, mb, auc, kind="slm", ms=5.0):
        return {"name": name, "size_mb": mb, "val_pr_auc": auc, "pr_auc": 1.0 - auc, "kind": kind,
                "latency_p50_ms": ms}

    rows = [v("fp32", 91.6, 0.9938), v("int8", 24.2, 0.9928), v("onnx_int8", 23.7, 0.9937),
            v("distilled_int8", 18.6, 0.9889), v("pruned", 91.6, 0.9941),
            v("baseline_tfidf_lr", 1.4, 0.9907, kind="baseline")]
    assert choose_variant(rows, 0.01) == "distilled_int8"
    r = choose_variant_explained(rows, 0.01, True)
    assert r["chosen"] == "onnx_int8" and r["budget_only_choice"] == "distilled_int8" and r["floor_met"]
    # no variant within the budget reaches the baseline: the best eligible one ships (not the smallest), and says so
    low = [dict(x, val_pr_auc=x["val_pr_auc"] - 0.01) if x["kind"] == "slm" else x for x in rows]
    r = choose_variant_explained(low, 0.01, True)
    assert r["chosen"] == "pruned" and r["floor_met"] is False and r["baseline_beats_all"]
    # the baseline itself is never chosen, and an over-budget variant never is either
    assert choose_variant_explained(rows, 0.0, True)["chosen"] in ("fp32", "pruned")


def test_epoch_and_learning_rate_rules():
    """Defaults that do not depend on the data set: every train row, as many passes as the examples budget allows;
    the learning rate from the step count."""
    from pipeline.train.trainer import auto_epochs, lr_rule

    assert auto_epochs("auto", 5347, 6000, 6) == 1 and auto_epochs("auto", 2700, 6000, 6) == 2
    assert auto_epochs("auto", 48, 6000, 6) == 6 and auto_epochs(3, 48, 6000, 6) == 3
    assert lr_rule(140) == 3e-3 and lr_rule(10_000) == 1e-3 and 1e-3 < lr_rule(470) < 3e-3


def test_learning_rate_sweep(splits, tmp_path):
    """learning_rate: sweep runs one short epoch per candidate and trains with the best; recorded in the metrics."""
    from pipeline.train import run_train

    m = run_train(splits, tmp_path / "lora", tiny_params(**{"train.learning_rate": "sweep",
                                                            "train.lr_candidates": [0.0005, 0.003],
                                                            "train.lr_sweep_rows": 50}))
    assert [r["learning_rate"] for r in m["lr_sweep"]] == [0.0005, 0.003]
    assert m["learning_rate"] in (0.0005, 0.003)
    best = max(r["val_pr_auc"] for r in m["lr_sweep"])
    assert next(r for r in m["lr_sweep"] if r["learning_rate"] == m["learning_rate"])["val_pr_auc"] >= best - 0.005


def test_ia3_and_top_k_methods(splits, tmp_path, trained):
    """train.peft_method: ia3 trains scaling vectors only (far fewer trainable parameters than LoRA), its merged
    model scores as the adapter does, and the saved adapter config is IA3's; top_k_layers limits it to the top k."""
    from pipeline.train import run_train

    m = run_train(splits, tmp_path / "ia3", tiny_params(**{"train.peft_method": "ia3"}))
    cfg = json.loads((tmp_path / "ia3" / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "IA3" and cfg["feedforward_modules"] == sorted(cfg["feedforward_modules"])
    assert 0 < m["trainable_params"] < trained["metrics"]["trainable_params"]
    assert m["merge_max_abs_diff"] < 1e-4
    top = run_train(splits, tmp_path / "ia3_top1", tiny_params(**{"train.peft_method": "ia3", "train.top_k_layers": 1}))
    assert top["trainable_params"] < m["trainable_params"]
    assert "IA3" in (tmp_path / "ia3" / "model_card.md").read_text()
