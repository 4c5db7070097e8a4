"""PII detection speed, measured in one run on the same demo texts.

* naive: a per-record loop of Presidio `AnalyzerEngine.analyze` + `AnonymizerEngine.anonymize` (same recognizer
  registry and spaCy model, loaded the usual way with the full spaCy pipeline), one process;
* ours: `Detector.detect_batch` (dedup, NER-only `nlp.pipe`, prefilters) + a simple replacement, in 1 process and
  in `--workers` processes (a process pool, detector built once per worker, texts sent in partitions: what the
  anonymize stage does);
* spaCy NER alone: `nlp.pipe` with only the NER component, same process pool and partitions.

Worker start-up (model load) is excluded for every contender: pools are warmed before timing.

Run: `.venv/bin/python -m benchmarks.bench_pii_speed [--n 3000] [--workers 2]`
Writes benchmarks/results/bench_pii_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"

_W: dict[str, Any] = {}


# ------------------------------------------------------------------------------------------------ workers
def _init_detector(params_path: str) -> None:
    from pipeline.anonymize.detect import build_detector
    from pipeline.config import load_params

    _W["det"] = build_detector(load_params(params_path).anonymize)


def _job_detect(texts: list[str]) -> int:
    out = _replace_all(texts, _W["det"].detect_batch(texts))
    return sum(len(t) for t in out)


def _init_spacy(model: str) -> None:
    import spacy

    from pipeline.anonymize.detect import _unneeded_pipes

    _W["nlp"] = spacy.load(model, exclude=_unneeded_pipes(model))


def _job_spacy(texts: list[str]) -> int:
    return sum(len(d.ents) for d in _W["nlp"].pipe(texts, batch_size=256))


def _replace_all(texts: list[str], spans) -> list[str]:
    out = []
    for t, ss in zip(texts, spans):
        parts, pos = [], 0
        for s in ss:
            parts.append(t[pos:s.start])
            parts.append(f"<{s.type}>")
            pos = s.end
        parts.append(t[pos:])
        out.append("".join(parts))
    return out


def _pool_run(init, initarg, job, parts: list[list[str]], workers: int) -> float:
    with ProcessPoolExecutor(max_workers=workers, initializer=init, initargs=(initarg,)) as pool:
        list(pool.map(job, [p[:20] for p in parts[:workers]]))  # warm: every worker has loaded its model
        t0 = time.perf_counter()
        list(pool.map(job, parts))
        return time.perf_counter() - t0


# --------------------------------------------------------------------------------------------------- main
def demo_texts(n: int, seed: int) -> list[str]:
    from benchmarks.bench_pii_quality import load_demo_texts
    from pipeline.config import DemoParams
    from pipeline.demo import generate

    with tempfile.TemporaryDirectory(prefix="bench_speed_") as tmp:
        raw = Path(tmp) / "raw"
        generate(out=raw, truth_out=Path(tmp) / "truth", n=n, seed=seed, params=DemoParams())
        texts = load_demo_texts(raw)
    return [texts[k] for k in sorted(texts) if k[2] != "From"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="demo records to generate")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--partition", type=int, default=250, help="texts per job sent to a worker")
    ap.add_argument("--naive-sample", type=int, default=600, help="texts timed for the (slow) naive loop")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    args = ap.parse_args(argv)

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    from pipeline.anonymize.detect import build_detector
    from pipeline.config import load_params

    params = load_params(args.params)
    a = params.anonymize
    texts = demo_texts(args.n, args.seed)
    chars = sum(len(t) for t in texts)
    parts = [texts[i:i + args.partition] for i in range(0, len(texts), args.partition)]
    res: dict[str, Any] = {"texts": len(texts), "distinct_texts": len(set(texts)), "chars": chars,
                           "workers": args.workers, "cpus": os.cpu_count(), "spacy_model": a.spacy_model}

    # ours, one process
    det = build_detector(a)
    det.detect_batch(texts[:20])
    t0 = time.perf_counter()
    _replace_all(texts, det.detect_batch(texts))
    res["ours_1proc_rps"] = len(texts) / (time.perf_counter() - t0)

    # naive loop (same registry and model, full spaCy pipeline, one text at a time), on a sample
    naive_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": a.spacy_model}],
                                  ner_model_configuration=det.engine.ner_model_configuration)
    naive = AnalyzerEngine(registry=det.analyzer.registry, nlp_engine=naive_engine, supported_languages=["en"])
    anonymizer = AnonymizerEngine()
    sample = texts[: args.naive_sample]
    naive.analyze(sample[0], language="en", entities=det.entities)
    t0 = time.perf_counter()
    for t in sample:
        r = naive.analyze(t, language="en", entities=det.entities, score_threshold=a.score_threshold)
        anonymizer.anonymize(text=t, analyzer_results=r)
    res["naive_rps"] = len(sample) / (time.perf_counter() - t0)
    res["naive_sample"] = len(sample)
    del naive, naive_engine, det

    # ours and spaCy NER alone in a process pool
    res["ours_pool_rps"] = len(texts) / _pool_run(_init_detector, args.params, _job_detect, parts, args.workers)
    res["spacy_ner_pool_rps"] = len(texts) / _pool_run(_init_spacy, a.spacy_model, _job_spacy, parts, args.workers)

    # the same two on distinct texts only (our dedup removed): the detector's own cost against NER alone
    uniq = list(dict.fromkeys(texts))
    uparts = [uniq[i:i + args.partition] for i in range(0, len(uniq), args.partition)]
    res["ours_pool_distinct_rps"] = len(uniq) / _pool_run(_init_detector, args.params, _job_detect, uparts, args.workers)
    res["spacy_ner_pool_distinct_rps"] = len(uniq) / _pool_run(_init_spacy, a.spacy_model, _job_spacy, uparts, args.workers)
    res["ratio_vs_spacy_ner_distinct"] = res["ours_pool_distinct_rps"] / res["spacy_ner_pool_distinct_rps"]

    res["speedup_vs_naive"] = res["ours_pool_rps"] / res["naive_rps"]
    res["speedup_vs_naive_1proc"] = res["ours_1proc_rps"] / res["naive_rps"]
    res["ratio_vs_spacy_ner"] = res["ours_pool_rps"] / res["spacy_ner_pool_rps"]
    res["targets"] = {"speedup_vs_naive>=5": res["speedup_vs_naive"] >= 5,
                      "ratio_vs_spacy_ner>=0.7": res["ratio_vs_spacy_ner"] >= 0.7}
    res = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in res.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_pii_speed.json").write_text(json.dumps(res, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{res['texts']} demo texts ({res['distinct_texts']} distinct), {args.workers} workers, {os.cpu_count()} CPUs")
    print(f"  naive analyze+anonymize loop : {res['naive_rps']:8.1f} records/s (1 process, {len(sample)} texts)")
    print(f"  ours, 1 process              : {res['ours_1proc_rps']:8.1f} records/s")
    print(f"  ours, {args.workers} processes            : {res['ours_pool_rps']:8.1f} records/s")
    print(f"  spaCy NER alone, {args.workers} processes : {res['spacy_ner_pool_rps']:8.1f} records/s")
    print(f"  speed-up vs naive: {res['speedup_vs_naive']:.2f}x (1 process: {res['speedup_vs_naive_1proc']:.2f}x); "
          f"ratio vs spaCy NER alone: {res['ratio_vs_spacy_ner']:.2f}x "
          f"(distinct texts only: {res['ratio_vs_spacy_ner_distinct']:.2f}x)")
    return res


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
