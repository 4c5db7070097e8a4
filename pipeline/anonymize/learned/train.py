"""`fraudslm train-pii` / `make pii-model`: continue the bundled spaCy model's NER on the project's own generated
data and save a small ner-only pipeline with a model card.

Offline and reproducible: the base model is loaded from the installed package (never downloaded), all randomness
comes from `PiiTrainParams.seed` (generator, shuffling, dropout via `spacy.util.fix_random_seed`), one thread.

Rehearsal: the stock model's own predictions on the generated texts for the labels the generator does not
annotate (DATE, TIME, NORP, ORG, MONEY, ...) are added as silver labels wherever they do not touch an inserted
value, so the retrained NER keeps them instead of forgetting them. Gold labels: PERSON, STREET_ADDRESS (new),
GPE, ORG, DATE, TIME, NORP from the generator.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pipeline.anonymize.learned.recognizer import model_sha256  # noqa: F401 - also this module's API
from pipeline.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.config import PiiTrainParams

# labels the stock model keeps through rehearsal (PERSON / GPE / LOC / FAC come from the generator's gold labels
# only: a stock PERSON on a template word is a false positive the retrained model should unlearn)
REHEARSE = frozenset({"DATE", "TIME", "NORP", "ORG", "MONEY", "CARDINAL", "ORDINAL", "PERCENT", "QUANTITY",
                      "EVENT", "PRODUCT", "LAW", "LANGUAGE", "WORK_OF_ART", "GPE", "LOC", "FAC"})
EVAL_TYPES = ("PERSON", "STREET_ADDRESS", "GPE")


def _threads_one() -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - optional
        pass


def _load_ner_only(name: str):
    import spacy

    if not (spacy.util.is_package(name) or Path(name).exists()):
        raise ConfigError(f"anonymize.spacy_model: base spaCy model {name!r} is not installed (no download)")
    nlp = spacy.load(name)
    for p in [p for p in nlp.component_names if p != "ner"]:  # disabled ones too (senter)
        nlp.remove_pipe(p)
    return nlp


def _examples(nlp, stock, records: list[dict[str, Any]], rehearse: bool):
    from spacy.training import Example
    from spacy.util import filter_spans

    texts = [r["text"] for r in records]
    silver = stock.pipe(texts, batch_size=256) if rehearse else (None for _ in texts)
    out = []
    for r, sdoc in zip(records, silver):
        doc = nlp.make_doc(r["text"])
        spans = []
        for s in r["spans"]:
            sp = doc.char_span(s["start"], s["end"], label=s["type"], alignment_mode="expand")
            if sp is not None:
                spans.append(sp)
        if sdoc is not None:
            taken = [(x[0], x[1]) for x in r["slots"]]
            for ent in sdoc.ents:
                if ent.label_ not in REHEARSE:
                    continue
                if any(ent.start_char < e and s < ent.end_char for s, e in taken):
                    continue
                sp = doc.char_span(ent.start_char, ent.end_char, label=ent.label_, alignment_mode="expand")
                if sp is not None:
                    spans.append(sp)
        ref = nlp.make_doc(r["text"])
        ref.set_ents([ref[s.start:s.end] if False else _span(ref, s) for s in filter_spans(spans)])
        out.append(Example(doc, ref))
    return out


def _span(doc, s):
    from spacy.tokens import Span

    return Span(doc, s.start, s.end, label=s.label_)


def ner_predictions(nlp, texts: list[str]) -> list[list[tuple[str, int, int]]]:
    return [[(e.label_, e.start_char, e.end_char) for e in d.ents] for d in nlp.pipe(texts, batch_size=256)]


def evaluate_ner(nlp, records: list[dict[str, Any]], label_map: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """Coverage recall (PERSON, STREET_ADDRESS, GPE gold spans) and character precision of the NER alone, counting
    only predictions of the labels that become PII types (PERSON, STREET_ADDRESS, GPE, LOC, FAC)."""
    from pipeline.anonymize.learned.metrics import score

    keep = {"PERSON", "STREET_ADDRESS", "GPE", "LOC", "FAC"}
    texts = [r["text"] for r in records]
    preds = [[(s, e) for lab, s, e in p if lab in keep] for p in ner_predictions(nlp, texts)]
    golds = [[(s["type"], s["start"], s["end"]) for s in r["spans"] if s["type"] in EVAL_TYPES] for r in records]
    return score(texts, golds, preds)


def _train_member(params: "PiiTrainParams", seed: int, base_model: str, stock, labels: list[str],
                  train: list[dict[str, Any]]):
    """One training from the base model on one generated corpus (seed: shuffling and dropout)."""
    import spacy
    from spacy.util import compounding, minibatch

    spacy.util.fix_random_seed(seed)
    nlp = _load_ner_only(base_model)
    ner = nlp.get_pipe("ner")
    for lab in labels:
        ner.add_label(lab)
    examples = _examples(nlp, stock, train, params.rehearse)
    spacy.util.fix_random_seed(seed)
    optimizer = nlp.resume_training()
    optimizer.learn_rate = params.learn_rate
    rng = random.Random(seed)
    losses_per_epoch = []
    for _epoch in range(params.epochs):
        rng.shuffle(examples)
        losses: dict[str, float] = {}
        for batch in minibatch(examples, size=compounding(4.0, float(params.batch_size), 1.001)):
            nlp.update(batch, drop=params.dropout, sgd=optimizer, losses=losses)
        losses_per_epoch.append(round(float(losses.get("ner", 0.0)), 2))
    return nlp, losses_per_epoch


def average_weights(nlps: list) -> None:
    """Uniform model soup: every parameter of the first pipeline's NER becomes the mean over `nlps` (same base model,
    same labels, so the same architecture node by node). One model's inference cost, less seed-to-seed spread."""
    import numpy as np

    models = [n.get_pipe("ner").model for n in nlps]
    labels = {tuple(n.get_pipe("ner").labels) for n in nlps}
    if len(labels) != 1:
        raise ValueError("soup members differ in their labels")
    for nodes in zip(*[list(m.walk()) for m in models]):
        first = nodes[0]
        for name in first.param_names:
            if not first.has_param(name):
                continue
            vals = [n.get_param(name) for n in nodes]
            if any(v is None or v.shape != vals[0].shape for v in vals):
                raise ValueError(f"soup members differ in parameter {first.name}.{name}")
            first.set_param(name, np.mean(np.stack(vals), axis=0).astype(vals[0].dtype))


def train_pii(params: "PiiTrainParams", base_model: str, out: Path) -> dict[str, Any]:
    """Generate, train, evaluate and save. Returns the training record (also written to out/training.json).

    `params.soup` trainings (seeds seed, seed+1, ...: each its own generated corpus, order and dropout) are averaged
    weight by weight into the saved model (a uniform model soup)."""
    import spacy

    from pipeline.anonymize.learned import generate as G

    _threads_one()
    t0 = time.perf_counter()
    out = Path(out)
    seeds = [params.seed + k for k in range(params.soup)]
    if params.heldout_seed in seeds:
        raise ConfigError(f"anonymize.pii_train.heldout_seed {params.heldout_seed} is one of the training seeds "
                          f"{seeds}: the held-out corpus must be another one")
    corpora = [G.generate(params.n_train, s) for s in seeds]
    held = G.generate(params.n_heldout, params.heldout_seed)
    train_shas, held_sha = [G.corpus_sha256(c) for c in corpora], G.corpus_sha256(held)

    spacy.util.fix_random_seed(params.seed)
    stock = _load_ner_only(base_model)
    before = evaluate_ner(stock, held)
    labels = sorted({s["type"] for c in corpora for r in c for s in r["spans"]})
    members, nlps = [], []
    for seed, train, sha in zip(seeds, corpora, train_shas):
        nlp, losses_per_epoch = _train_member(params, seed, base_model, stock, labels, train)
        members.append({"seed": seed, "train_sha256": sha, "losses_per_epoch": losses_per_epoch,
                        "heldout_after": _brief(evaluate_ner(nlp, held)) if params.soup > 1 else None})
        nlps.append(nlp)
    del stock
    if len(nlps) > 1:
        average_weights(nlps)
    nlp = nlps[0]
    del nlps[1:]
    after = evaluate_ner(nlp, held)
    losses_per_epoch = members[0]["losses_per_epoch"]
    train = corpora[0]
    train_sha = train_shas[0]
    train_seconds = round(time.perf_counter() - t0, 1)

    nlp.meta["name"] = "pii_ner"
    nlp.meta["version"] = "1.0.0"
    nlp.meta["description"] = ("fraudslm learned PII NER (PERSON, STREET_ADDRESS, GPE + the base model's other "
                               "labels kept by rehearsal); see README.md")
    nlp.meta["sources"] = [{"name": f"fraudslm generator {G.GENERATOR_VERSION}", "url": "", "license": ""}]
    for k in ("performance", "requirements", "url", "email", "author", "license", "spacy_git_version"):
        nlp.meta.pop(k, None)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    nlp.to_disk(tmp)
    size = sum(p.stat().st_size for p in tmp.rglob("*") if p.is_file())
    sha = model_sha256(tmp)
    from importlib import metadata

    record = {
        "model": "pii_ner", "model_sha256": sha, "size_bytes": size, "base_model": base_model,
        "base_model_version": _version(metadata, base_model.replace("_", "-")),
        "spacy_version": spacy.__version__, "labels": list(nlp.get_pipe("ner").labels),
        "generator": {"version": G.GENERATOR_VERSION, "train_seed": params.seed, "train_records": len(train),
                      "train_sha256": train_sha, "soup_seeds": seeds, "heldout_seed": params.heldout_seed,
                      "heldout_records": len(held), "heldout_sha256": held_sha},
        "settings": params.model_dump(mode="json"),
        "losses_per_epoch": losses_per_epoch,
        "soup_members": members,
        "heldout_ner_only": {"before_stock_ner": before, "after_learned_ner": after},
    }
    (tmp / "training.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (tmp / "README.md").write_text(model_card(record, train_seconds), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    record["train_seconds"] = train_seconds
    return record


def _brief(ev: dict[str, Any]) -> dict[str, Any]:
    return {"recall": {t: ev["recall_by_type"].get(t, {}).get("recall") for t in EVAL_TYPES},
            "char_precision": ev["char_precision"]}


def _soup_line(rec: dict[str, Any]) -> str:
    seeds = rec["generator"]["soup_seeds"]
    if len(seeds) == 1:
        return f"seed {seeds[0]}."
    return (f"{len(seeds)} trainings (seeds {', '.join(map(str, seeds))}: each its own generated corpus, order and "
            "dropout) averaged weight by weight into this one model (a uniform model soup: one model's inference "
            "cost, and less of one training's luck).")


def _corpora_line(rec: dict[str, Any]) -> str:
    g = rec["generator"]
    return "; ".join(f"seed {m['seed']}, {g['train_records']} texts, sha256 `{m['train_sha256']}`"
                     for m in rec["soup_members"])


def _members_table(rec: dict[str, Any]) -> str:
    members = [m for m in rec["soup_members"] if m["heldout_after"]]
    if not members:
        return ""
    head = "| training | " + " | ".join(f"{t} recall" for t in EVAL_TYPES) + " | character precision |"
    rows = [head, "| --- |" + " --- |" * (len(EVAL_TYPES) + 1)]
    for m in members:
        h = m["heldout_after"]
        rows.append(f"| seed {m['seed']} alone | " + " | ".join(str(h["recall"].get(t)) for t in EVAL_TYPES)
                    + f" | {h['char_precision']} |")
    a = rec["heldout_ner_only"]["after_learned_ner"]
    rows.append("| **the soup (this model)** | " + " | ".join(
        str(a["recall_by_type"].get(t, {}).get("recall")) for t in EVAL_TYPES) + f" | {a['char_precision']} |")
    return "\n\nEach training alone against the soup, on the held-out generated set (NER alone):\n\n" + "\n".join(rows)


def _version(metadata, name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def model_card(rec: dict[str, Any], seconds: float) -> str:
    from pipeline.anonymize.learned import generate as G

    g = rec["generator"]
    b, a = rec["heldout_ner_only"]["before_stock_ner"], rec["heldout_ner_only"]["after_learned_ner"]
    rows = []
    for t in EVAL_TYPES:
        bb, aa = b["recall_by_type"].get(t, {}), a["recall_by_type"].get(t, {})
        rows.append(f"| {t} | {aa.get('n', 0)} | {bb.get('recall', '-')} | {aa.get('recall', '-')} |")
    rows.append(f"| character precision | | {b['char_precision']} | {a['char_precision']} |")
    s = rec["settings"]
    return f"""# pii_ner: the learned PII detector of fraudslm (issue 20)

A spaCy NER pipeline (one `ner` component with its own tok2vec, no parser/tagger/lemmatizer), trained further from
`{rec['base_model']}` {rec['base_model_version']} (spaCy {rec['spacy_version']}) by `fraudslm train-pii`
(`make pii-model`), offline, single-threaded: {_soup_line(rec)} Used by `schemas/recognizers.yaml`'s
`LearnedPiiRecognizer` as the NLP engine's only model (params.yaml `anonymize.pii_model`).

- Labels: {', '.join(rec['labels'])}. New: STREET_ADDRESS (a whole address: street, unit, city, postcode, country).
- Files: {rec['size_bytes'] / 1e6:.1f} MB, sha256 {rec['model_sha256'][:16]}... (README.md / training.json excluded).

## Training data
Generator `pipeline/anonymize/learned/generate.py` version **{g['version']}**: Faker in 35 locales plus the
project's own names (particles, apostrophes, Al-/O'/Mc prefixes, lower-case and ALL-CAPS) and templates (chats,
e-mails, case notes, KYC notes, transaction memos, address blocks, narratives, PII-free negatives), and
counterfactual negatives: {G.CF_RATE:.0%} of the other texts keep their template with role nouns ("the customer",
"my son", "Fraud Team", "the branch") unlabelled in the name and address slots.
Training corpora: {_corpora_line(rec)}.
Held-out corpus (never trained on): seed {g['heldout_seed']}, {g['heldout_records']} texts, sha256 `{g['heldout_sha256']}`.
No presidio-evaluator / presidio-research template and nothing from `../shared/data/pii_benchmark` is used; the
shipped evaluation set (pipeline/anonymize/eval_set, seed 917331) shares no template, skeleton or text with the
corpus (`disjointness_report`). Rehearsal: the base model's own DATE/TIME/NORP/ORG/MONEY/... predictions on the
generated texts are kept as silver labels where they touch no inserted value.

## Settings
epochs {s['epochs']}, dropout {s['dropout']}, batch up to {s['batch_size']}, learn rate {s['learn_rate']},
rehearsal {s['rehearse']}, soup {s.get('soup', 1)}. Loss per epoch (first training): {rec['losses_per_epoch']}.
Training time: {seconds:.0f} s on one thread.{_members_table(rec)}

## Evaluation (NER alone, held-out generated set)
A gold span is caught when predictions of PERSON/STREET_ADDRESS/GPE/LOC/FAC cover at least 90% of its characters.
The whole detector (with the rule recognizers) on the shipped evaluation set and on the PII benchmark:
`benchmarks/results/bench_pii_quality.json`.

| type | n | stock NER recall | learned NER recall |
| --- | --- | --- | --- |
{chr(10).join(rows)}

## Limits
English-language texts; names and addresses in styles far from the generator's may still be missed, which is why
the anonymize stage reports a measured residual risk instead of assuming none.
"""
