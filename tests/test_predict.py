"""`fraudslm predict` and what a shipped folder carries: real tiny training (bundled MiniLM, peft), real compress,
real Presidio + spaCy anonymization, real onnxruntime. The ONNX no-torch and Hugging Face loading checks run in a
fresh interpreter (a module already imported here would hide the point)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_train import make_splits, tiny_params  # noqa: E402

PII_VALUES = ["Johnathan Whitfield", "4111 1111 1111 1111", "GB82WEST12345698765432", "j.whitfield@example.com",
              "+44 20 7946 0958"]
RAW = [
    "Urgent: your account is locked, confirm your IBAN GB82WEST12345698765432 and one-time code to release 250 GBP "
    "today. Call +44 20 7946 0958.",
    "Customer Johnathan Whitfield reports a card-not-present charge of 99.00 EUR; card 4111 1111 1111 1111 was used "
    "from a new device.",
    "Thanks for the quick help with my statement, the 12.50 USD refund arrived as expected. j.whitfield@example.com",
    "Salary credit of 1800 GBP received from employer, standing order unchanged.",
]
SHIP_KEYS_SKIP = {"name", "kind", "quantization", "precision", "opset", "sparsity", "teacher_layers_used"}


@pytest.fixture(scope="module")
def compressed(tmp_path_factory) -> dict:
    from pipeline.train import run_compress, run_train

    base = tmp_path_factory.mktemp("predict")
    splits = make_splits(base / "05_splits")
    run_train(splits, base / "lora", tiny_params(**{"train.epochs": 2}))
    metrics = run_compress(base / "lora", splits, base / "c",
                           tiny_params(**{"compress.pruning_sparsity": 0.0, "compress.recovery_steps": 0}))
    return {"base": base, "out": base / "c", "metrics": metrics}


def shipped(compressed: dict, variant: str, dest: Path) -> Path:
    """A shipped folder for another variant: its files + the chosen folder's shipped settings (threshold etc.)."""
    ship = json.loads((compressed["out"] / "chosen" / "variant.json").read_text())
    shutil.copytree(compressed["out"] / "variants" / variant, dest)
    meta = json.loads((dest / "variant.json").read_text())
    meta.update({k: v for k, v in ship.items() if k not in SHIP_KEYS_SKIP and k not in meta})
    (dest / "variant.json").write_text(json.dumps(meta))
    return dest


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return env


# ---------------------------------------------------------------------------------------------------------------
# no model needed


def test_router_band_and_metrics():
    from pipeline.train.metrics import route, router_band, router_metrics

    y = np.array([0] * 90 + [1] * 10)
    p = np.r_[np.linspace(0, 0.5, 85), np.linspace(0.55, 0.7, 5), np.linspace(0.6, 1.0, 10)]
    band = router_band(y, p, 0.58, 0.95)
    assert band["low"] is not None and band["high"] is not None and band["low"] <= 0.58 <= band["high"]
    m = router_metrics(y, p, band)
    assert m["auto_fraud_precision"] >= 0.95 and m["auto_legit_precision"] >= 0.95
    assert 0 < m["coverage"] <= 1 and m["auto_fraud"] + m["auto_legit"] + m["review"] == 100
    assert set(route(p, band)) <= {"auto", "review"}
    # a target nothing reaches: nothing is auto-routed on that side
    band = router_band(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]), 0.25, 0.99)
    assert band["high"] is None or router_metrics(np.array([0, 1, 0, 1]), np.array([0.1, 0.2, 0.3, 0.4]),
                                                  band)["auto_fraud_precision"] >= 0.99


def test_fast_average_precision_matches_sklearn():
    from sklearn.metrics import average_precision_score

    from pipeline.train.metrics import average_precision_fast, paired_bootstrap

    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.1).astype(int)
    p = np.round(rng.random(300) * 0.5 + y * 0.3, 2)  # ties on purpose
    assert abs(average_precision_fast(y, p) - average_precision_score(y, p)) < 1e-12
    same = paired_bootstrap(y, p, p, n_boot=100)
    assert same["diff"] == 0 and not same["significant_below"]
    worse = paired_bootstrap(y, rng.random(300), p, n_boot=200)
    assert worse["significant_below"] and worse["ci_high"] < 0


def test_variant_choice_rule_on_validation():
    from pipeline.train.compress import choose_variant_explained

    def v(name, mb, auc, kind="slm", below=False):
        return {"name": name, "size_mb": mb, "val_pr_auc": auc, "pr_auc": 0.5, "kind": kind,
                "latency_p50_ms": 5.0, "significant_below_fp32": below}

    rows = [v("fp32", 91.6, 0.9938), v("int8", 24.2, 0.9928), v("onnx_int8", 23.7, 0.9937),
            v("distilled_int8", 18.6, 0.9889), v("baseline_tfidf_lr", 1.4, 0.9907, kind="baseline")]
    r = choose_variant_explained(rows, 0.01, True)
    assert r["chosen"] == "onnx_int8" and r["floor_met"] and not r["baseline_beats_all"]
    # significantly below fp32 on validation: never shipped, even when the smallest within the budget
    rows2 = [dict(x, significant_below_fp32=x["name"] == "onnx_int8") for x in rows]
    assert choose_variant_explained(rows2, 0.01, True)["chosen"] == "int8"
    # the baseline beats every variant: metrics say so, floor_met false, the best eligible variant ships
    low = [dict(x, val_pr_auc=x["val_pr_auc"] - 0.05) if x["kind"] == "slm" else x for x in rows]
    r = choose_variant_explained(low, 0.01, True)
    assert r["floor_met"] is False and r["baseline_beats_all"] and r["chosen"] == "fp32"


def test_bad_params_messages():
    from pipeline.config import load_params
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="flip_rate_fraud_to_legit"):
        load_params(None, {"demo.flip_rate": 0.05})
    p = load_params(None)
    assert p.train.threads == "auto" and p.compress.threads == "auto" and p.predict.target_precision == 0.95
    assert p.split.rebalance == "auto" and p.train.learning_rate == "auto"


# ---------------------------------------------------------------------------------------------------------------
# the shipped folder


def test_shipped_folder_carries_everything(compressed):
    meta = json.loads((compressed["out"] / "chosen" / "variant.json").read_text())
    for k in ("threshold", "labels", "max_length", "placeholder_handling", "anonymizer", "data_version", "metrics",
              "router"):
        assert k in meta, k
    m = compressed["metrics"]
    chosen = m["chosen"]
    assert meta["threshold"] == m["variants_by_name"][chosen]["threshold"]
    assert meta["anonymizer"]["digest"] and meta["anonymizer"]["key_fingerprint"]
    assert set(m["variants_by_name"]) == {r["name"] for r in m["variants"]}
    assert "floor_met" in m["chosen_rule"] and m["chosen_rule"]["chosen_on"] == "val_pr_auc"
    card = (compressed["out"] / "chosen" / "README.md").read_text()
    assert f"{meta['threshold']:.4f}" in card and "coverage" in card and "trust_remote_code=True" in card
    assert m["hf_loading_check"]["passed"]


def test_adapter_config_has_no_absolute_path(compressed):
    cfg = json.loads((compressed["base"] / "lora" / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == "bundled"


def test_predict_writes_no_pii_and_reports_bad_lines(compressed, tmp_path, capfd):
    from pipeline.predict import load

    inp = tmp_path / "texts.jsonl"
    lines = [json.dumps({"id": f"r{i}", "text": t}) for i, t in enumerate(RAW)]
    lines.insert(2, "{not json")
    lines.insert(4, json.dumps({"id": "x", "text": 5}))
    lines.append(json.dumps({"id": "empty", "text": "  "}))
    inp.write_text("\n".join(lines) + "\n")
    model = load(compressed["out"] / "chosen", threads=1, batch_size=2)
    counts = model.predict_file(inp, tmp_path / "scores.jsonl", progress=False)
    err = capfd.readouterr().err
    assert f"{inp}:3: invalid JSON" in err and f"{inp}:5: missing 'text'" in err
    assert counts["bad_lines"] == 2 and counts["scored"] == len(RAW) and counts["errors"] == 1
    text = (tmp_path / "scores.jsonl").read_text()
    for v in PII_VALUES + ["Whitfield"]:
        assert v not in text and v not in err
    rows = [json.loads(x) for x in text.splitlines()]
    assert [r["id"] for r in rows] == [f"r{i}" for i in range(len(RAW))] + ["empty"]
    for r in rows[:-1]:
        assert set(r) == {"id", "score", "label", "route"} and 0 <= r["score"] <= 1
        assert r["label"] == ("fraud" if r["score"] >= model.threshold else "legit")
        assert r["route"] in ("auto", "review")
    assert rows[-1]["route"] == "error" and rows[-1]["score"] is None
    # the Python API gives the same scores
    api = model.predict(RAW)
    assert [a["score"] for a in api] == [r["score"] for r in rows[:-1]]


def test_anonymization_failure_is_never_scored(compressed):
    from pipeline.predict import load

    model = load(compressed["out"] / "chosen", threads=1)

    class Broken:
        def detect_batch(self, texts, ner=True):
            raise RuntimeError("detector down")

    model.anonymizer.detector = Broken()
    res = model.predict(["Customer Johnathan Whitfield reports fraud"])
    assert res == [{"score": None, "label": None, "route": "error", "error": "detect_failed"}]


def test_cli_predict(compressed, tmp_path):
    inp = tmp_path / "t.jsonl"
    inp.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in enumerate(RAW)) + "\n[1]\n")
    out = tmp_path / "s.jsonl"
    proc = subprocess.run([str(Path(sys.executable).parent / "fraudslm"), "predict", "--model",
                           str(compressed["out"] / "chosen"), "--in", str(inp), "--out", str(out)],
                          capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"{inp}:{len(RAW) + 1}: expected a JSON object" in proc.stderr
    assert len(out.read_text().splitlines()) == len(RAW)
    for v in PII_VALUES:
        assert v not in proc.stderr and v not in out.read_text()


def test_onnx_variant_predicts_without_torch(compressed, tmp_path):
    folder = shipped(compressed, "onnx_int8", tmp_path / "onnx")
    code = ("import sys, json; from pipeline.predict import load; m = load(sys.argv[1], threads=1); "
            "r = m.predict(json.loads(sys.argv[2])); "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'transformers_models': any(k.startswith("
            "'transformers.models.bert') for k in sys.modules), 'rows': r}))")
    proc = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(RAW)], capture_output=True, text=True,
                          env=_env(), timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["torch"] is False
    assert all(r["route"] in ("auto", "review") for r in res["rows"])
    # same scores as the ONNX scorer in this process (anonymized the same way)
    from pipeline.predict import load

    here = load(folder, threads=1).predict(RAW)
    assert np.allclose([r["score"] for r in here], [r["score"] for r in res["rows"]], atol=1e-6)


def test_hf_from_pretrained_gives_predict_scores(compressed):
    """AutoModelForSequenceClassification on the shipped fp32 folder (trust_remote_code) = predict's scores; without
    trust_remote_code transformers refuses instead of building a different model."""
    from pipeline.train.predict import load_variant

    folder = compressed["out"] / "variants" / "fp32"
    texts = ["card <CREDIT_CARD_0a1b2c3d4e5f> charged twice by an unknown merchant", "salary credit received"]
    want = load_variant(folder, threads=1).predict_proba(texts)
    code = ("import sys, json, torch; from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
            "f = sys.argv[1]; texts = json.loads(sys.argv[2])\n"
            "m = AutoModelForSequenceClassification.from_pretrained(f, trust_remote_code=True).eval()\n"
            "t = AutoTokenizer.from_pretrained(f)\n"
            "import re\n"
            "red = lambda s: re.sub(r'<([A-Z][A-Z_]*?)(?:_[0-9a-f]{6,})?>', lambda g: g.group(1).lower().replace('_', ' '), s)\n"
            "out = []\n"
            "for s in texts:\n"
            "    e = t([red(s)], truncation=True, max_length=32, return_tensors='pt'); e.pop('token_type_ids', None)\n"
            "    out.append(float(torch.softmax(m(**e).logits, -1)[0, 1]))\n"
            "refused = False\n"
            "try:\n"
            "    AutoModelForSequenceClassification.from_pretrained(f, trust_remote_code=False)\n"
            "except Exception:\n"
            "    refused = True\n"
            "print('RESULT=' + json.dumps({'cls': type(m).__name__, 'p': out, 'refused': refused}))\n")
    proc = subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(texts)], capture_output=True,
                          text=True, env={**_env(), "PYTHONPATH": ""}, cwd=str(folder.parent), timeout=600,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(proc.stdout.rsplit("RESULT=", 1)[1])
    assert res["cls"] == "MeanPoolBertForSequenceClassification"
    assert np.allclose(res["p"], want, atol=1e-5)
    assert res["refused"]


def test_changed_detector_warns(compressed, tmp_path, capfd):
    """A model folder records the registry's and the learned PII model's sha256; scoring with a different one warns
    (detection, hence the scored text, may differ), and the shipped ones raise no warning."""
    from pipeline.predict import load

    load(compressed["out"] / "chosen", threads=1)
    err = capfd.readouterr().err
    assert "registry differs" not in err and "PII model differs" not in err
    dest = tmp_path / "chosen"
    shutil.copytree(compressed["out"] / "chosen", dest)
    meta = json.loads((dest / "variant.json").read_text())
    meta["anonymizer"]["registry_sha256"] = "0" * 64
    meta["anonymizer"]["pii_model_sha256"] = "f" * 64
    (dest / "variant.json").write_text(json.dumps(meta))
    load(dest, threads=1)
    err = capfd.readouterr().err
    assert "recognizer registry differs" in err and "learned PII model differs" in err and "ffffffffffff" in err


def test_predict_without_the_key_scores_the_same_with_a_one_off_key(compressed, monkeypatch, capfd):
    """A scoring box need not hold the secret pseudonym key: without it, predict pseudonymizes with a one-off key
    (said on stderr) and the scores equal those under the training key, because the model sees placeholder types
    only. A key that is set but too short is still a configuration error."""
    from pipeline.anonymize.pseudonym import KEY_ENV
    from pipeline.errors import ConfigError
    from pipeline.predict import load

    with_key = load(compressed["out"] / "chosen", threads=1).predict(RAW)
    assert "one-off key" not in capfd.readouterr().err
    monkeypatch.delenv(KEY_ENV, raising=False)
    model = load(compressed["out"] / "chosen", threads=1)
    err = capfd.readouterr().err
    assert f"{KEY_ENV} is not set" in err and "one-off key" in err and "differs from the key" not in err
    assert model.one_off_key is True
    assert model.predict(RAW) == with_key
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ConfigError, match="too short"):
        load(compressed["out"] / "chosen", threads=1)


@pytest.mark.parametrize("variant", ["int8", "onnx_int8"])
def test_int8_scores_do_not_depend_on_the_batch(compressed, variant):
    """Dynamic int8 quantizes activations with one scale per call: batched, a text's score would move with its
    neighbours. Such variants score one text per call, so a text scores the same alone, in any batch, in any order."""
    from pipeline.train.predict import dynamic_int8, load_variant, read_variant_meta

    folder = compressed["out"] / "variants" / variant
    assert dynamic_int8(read_variant_meta(folder))
    scorer = load_variant(folder, threads=1)
    texts = ["card <CREDIT_CARD> blocked, call <PHONE_NUMBER> now to release your funds",
             "ok", "salary credit received " * 20, "thanks for the refund"]
    alone = [float(scorer.predict_proba([t])[0]) for t in texts]
    assert [float(x) for x in scorer.predict_proba(texts)] == alone
    assert [float(x) for x in scorer.predict_proba(texts[::-1])] == alone[::-1]
    fp32 = load_variant(compressed["out"] / "variants" / "fp32", threads=1)
    assert not dynamic_int8(read_variant_meta(compressed["out"] / "variants" / "fp32")) and fp32.batch_size > 1


def test_cli_predict_streams_stdin_to_stdout_and_accepts_the_compress_folder(compressed, tmp_path):
    """`--in -` / `--out -` stream through standard input / output (bad lines named <stdin>:N, never echoed), and
    `--model` may name the compress output: its `chosen/` is loaded. A missing input file fails before the model
    loads, with exit 2."""
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(RAW)] + ["{oops"]
    proc = subprocess.run([str(Path(sys.executable).parent / "fraudslm"), "predict", "--model", str(compressed["out"]),
                           "--in", "-", "--out", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(x) for x in proc.stdout.splitlines()]
    assert [r["id"] for r in rows] == list(range(len(RAW)))
    assert f"<stdin>:{len(RAW) + 1}: invalid JSON" in proc.stderr and "standard output" in proc.stderr
    for v in PII_VALUES:
        assert v not in proc.stdout and v not in proc.stderr
    from pipeline.predict import load

    assert [r["score"] for r in rows] == [r["score"] for r in load(compressed["out"] / "chosen", threads=1).predict(RAW)]
    missing = subprocess.run([str(Path(sys.executable).parent / "fraudslm"), "predict", "--model",
                              str(compressed["out"]), "--in", str(tmp_path / "nope.jsonl"), "--out",
                              str(tmp_path / "o.jsonl")], capture_output=True, text=True, env=_env(), timeout=600)
    assert missing.returncode == 2 and "input file not found" in missing.stderr and not (tmp_path / "o.jsonl").exists()
