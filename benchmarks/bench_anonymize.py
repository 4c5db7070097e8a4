"""Throughput of the anonymize stage against two baselines measured in the same run, on the same demo texts.

* stage     : `run_anonymize` end to end (detector build in the workers, detection, batch sweep, replacement, column
              policy, leakage gate, Parquet + reports), local executor with 2 worker processes;
* naive     : per-record `AnalyzerEngine.analyze` + `AnonymizerEngine.anonymize` (Presidio defaults, same spaCy model);
* naive_registry : the same per-record loop with THIS project's recognizer registry and entity set (what
              `build_detector` loads), full spaCy pipeline: like-for-like recognizer work; timed on the first
              `--registry-sample` texts (records/s), as it is slow;
* ner_only  : spaCy NER alone, `nlp.pipe(texts, n_process=2)` with every other pipe disabled.

Each variant runs in a fresh interpreter on the same texts and is timed twice:
* cold  : from before its imports (Presidio, spaCy) and model load to its last output (what one CLI call pays);
* warm  : from after its engine is built (model loaded; for the stage, the detector its forked workers inherit)
          to its last output: the per-record work alone, model load excluded for every contender.
The stage's warm time still includes its own input read, column policy, leakage gate and Parquet/report writes.
Parallelism: stage 2 worker processes, ner_only `n_process=2`, naive 1 process (a per-record loop).
Targets (issue): stage >= 5x naive, stage >= 0.7x ner_only (ratios reported for cold and warm).

    .venv/bin/python -m benchmarks.bench_anonymize [--n 3000] [--naive-limit 0] [--repeat 3]

Each variant runs `--repeat` times (default 3), the four interleaved round by round; the figures are medians and
every round is kept in the result file (these shared machines are noisy: one stage run took 2.4x its median once).

Writes benchmarks/results/anonymize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "anonymize.json"


def _demo_records(n: int, seed: int, base: Path) -> Path:
    from pipeline.config import DemoParams, load_params
    from pipeline.demo import generate
    from pipeline.ingest import run_ingest

    raw, truth = base / "01_raw", base / "ground_truth"
    generate(out=raw, truth_out=truth, n=n, seed=seed, params=DemoParams())
    params = load_params(REPO / "params.yaml", {"paths.raw": str(raw)})
    run_ingest(REPO / "schemas" / "sources.yaml", base / "02", params, ground_truth=truth, repo_root=REPO)
    return base / "02"


def bench_stage(inp: Path, out: Path, workers: int) -> dict:
    t = time.perf_counter()
    from pipeline.anonymize import run_anonymize
    from pipeline.config import load_params

    from pipeline.anonymize.executors import _detector

    params = load_params(
        REPO / "params.yaml",
        {"anonymize.workers": workers, "anonymize.executor": "local",
         "anonymize.registry": str(REPO / "schemas" / "recognizers.yaml")},
    )
    _detector(params.anonymize.model_dump_json(), None)  # the build run_anonymize would do first (cached)
    tw = time.perf_counter()
    m = run_anonymize(inp, out, params)
    end = time.perf_counter()
    return {"seconds": end - t, "warm_seconds": end - tw, "detect_seconds": m["detect_seconds"],
            "gate_passed": m["gate"]["passed"],
            "entities": m["entities"]["total"], "records": m["records_in"]}


def bench_naive(texts: list[str], model: str) -> dict:
    t = time.perf_counter()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_anonymizer import AnonymizerEngine

    from pipeline.anonymize.offline import ensure_offline

    ensure_offline()  # Presidio's e-mail recognizer would otherwise fetch the public-suffix list
    nlp_engine = NlpEngineProvider(nlp_configuration={
        "nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model}]}).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])
    anonymizer = AnonymizerEngine()
    analyzer.analyze(text="warm up", language="en")
    tw = time.perf_counter()
    n_ents = 0
    for text in texts:
        results = analyzer.analyze(text=text, language="en")
        n_ents += len(results)
        anonymizer.anonymize(text=text, analyzer_results=results)
    end = time.perf_counter()
    return {"seconds": end - t, "warm_seconds": end - tw, "entities": n_ents, "records": len(texts)}


def bench_naive_registry(texts: list[str]) -> dict:
    t = time.perf_counter()
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    from pipeline.anonymize.detect import build_detector
    from pipeline.config import load_params

    a = load_params(REPO / "params.yaml").anonymize
    det = build_detector(a)  # for its registry (our recognizers) and entity list only
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": a.spacy_model}],
                            ner_model_configuration=det.engine.ner_model_configuration)
    analyzer = AnalyzerEngine(registry=det.analyzer.registry, nlp_engine=engine, supported_languages=["en"])
    anonymizer = AnonymizerEngine()
    analyzer.analyze(text="warm up", language="en", entities=det.entities)
    tw = time.perf_counter()
    n_ents = 0
    for text in texts:
        results = analyzer.analyze(text=text, language="en", entities=det.entities, score_threshold=a.score_threshold)
        n_ents += len(results)
        anonymizer.anonymize(text=text, analyzer_results=results)
    end = time.perf_counter()
    return {"seconds": end - t, "warm_seconds": end - tw, "entities": n_ents, "records": len(texts)}


def bench_ner(texts: list[str], model: str, n_process: int) -> dict:
    t = time.perf_counter()
    import spacy

    nlp = spacy.load(model)
    keep = {"ner", "tok2vec"}
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in keep])
    nlp("warm up")
    tw = time.perf_counter()
    n_ents = sum(len(doc.ents) for doc in nlp.pipe(texts, n_process=n_process, batch_size=64))
    end = time.perf_counter()
    return {"seconds": end - t, "warm_seconds": end - tw, "entities": n_ents, "records": len(texts),
            "pipes": nlp.pipe_names}


def _variant(name: str, inp: Path, out: Path, workers: int, naive_limit: int, registry_sample: int) -> dict:
    """Run one variant in a fresh interpreter, so each pays its own imports and model load (cold start)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_anonymize", "--variant", name, "--inp", str(inp), "--out", str(out),
           "--workers", str(workers), "--naive-limit", str(naive_limit), "--registry-sample", str(registry_sample)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise SystemExit(f"variant {name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_variant(args) -> None:
    import pandas as pd

    from pipeline.config import load_params

    model = load_params(REPO / "params.yaml").anonymize.spacy_model
    inp = Path(args.inp)
    if args.variant == "stage":
        res = bench_stage(inp, Path(args.out), args.workers)
    else:
        texts = pd.read_parquet(inp / "records.parquet", columns=["text"])["text"].tolist()
        if args.variant == "ner_only":
            res = bench_ner(texts, model, n_process=2)
        elif args.variant == "naive_registry":
            res = bench_naive_registry(texts[: args.registry_sample])
        else:
            res = bench_naive(texts[: args.naive_limit] if args.naive_limit else texts, model)
    print(json.dumps(res))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="demo size (records)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-limit", type=int, default=0, help="time the naive loop on the first N texts only (0: all)")
    ap.add_argument("--registry-sample", type=int, default=600, help="texts timed for naive_registry")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the figures are medians")
    ap.add_argument("--variant", choices=["stage", "naive", "ner_only", "naive_registry"], help=argparse.SUPPRESS)
    ap.add_argument("--inp", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("FRAUDSLM_PSEUDONYM_KEY", "benchmark-key-not-a-secret-0123")
    if args.variant:
        _run_variant(args)
        return {}

    import pandas as pd

    from pipeline.config import load_params

    model = load_params(REPO / "params.yaml").anonymize.spacy_model
    with tempfile.TemporaryDirectory(prefix="bench-anon-") as tmp:
        base = Path(tmp)
        inp = _demo_records(args.n, args.seed, base)
        texts = pd.read_parquet(inp / "records.parquet", columns=["text"])["text"].tolist()
        print(f"{len(texts)} demo texts, mean {sum(map(len, texts)) / len(texts):.0f} chars", file=sys.stderr)
        # rounds of all four variants, interleaved (a slow spell of a shared machine hits every contender alike);
        # each variant's figures are its medians over the rounds, every round is kept
        rounds: dict[str, list[dict]] = {}
        for r in range(max(1, args.repeat)):
            for name in ("ner_only", "stage", "naive", "naive_registry"):
                v = _variant(name, inp, base / "03", args.workers, args.naive_limit, args.registry_sample)
                rounds.setdefault(name, []).append(v)
                print(f"round {r + 1}: {name:9s} cold {v['seconds']:.1f} s, warm {v['warm_seconds']:.1f} s "
                      f"({v['records']} records)", file=sys.stderr)
        res: dict = {}
        for name, runs in rounds.items():
            res[name] = dict(runs[0])
            for k in ("seconds", "warm_seconds", "detect_seconds"):
                if k in runs[0]:
                    res[name][k] = statistics.median(x[k] for x in runs)
            res[name]["rounds"] = [{"seconds": round(x["seconds"], 2), "warm_seconds": round(x["warm_seconds"], 2)}
                                   for x in runs]

    for v in res.values():
        v["records_per_s"] = round(v["records"] / v["seconds"], 2)
        v["warm_records_per_s"] = round(v["records"] / v["warm_seconds"], 2)
        v["seconds"] = round(v["seconds"], 2)
        v["warm_seconds"] = round(v["warm_seconds"], 2)
    stage_rps = res["stage"]["records_per_s"]
    stage_wrps = res["stage"]["warm_records_per_s"]
    out = {
        "benchmark": "anonymize",
        "n_texts": len(texts),
        "workers": args.workers,
        "spacy_model": model,
        "variants": res,
        "ratios": {
            "stage_vs_naive": round(stage_rps / res["naive"]["records_per_s"], 2),
            "stage_vs_ner_only": round(stage_rps / res["ner_only"]["records_per_s"], 2),
            "warm_stage_vs_naive": round(stage_wrps / res["naive"]["warm_records_per_s"], 2),
            "warm_stage_vs_ner_only": round(stage_wrps / res["ner_only"]["warm_records_per_s"], 2),
            # like for like: the same recognizers and entity types, per record (sample; model load excluded)
            "warm_stage_vs_naive_registry": round(stage_wrps / res["naive_registry"]["warm_records_per_s"], 2),
        },
        "targets": {"stage_vs_naive": 5.0, "stage_vs_ner_only": 0.7},
        "repeat": max(1, args.repeat),
        "round_stage_vs_naive": [round(n["seconds"] / s["seconds"], 2)
                                 for n, s in zip(rounds["naive"], rounds["stage"])],
        "note": ("each variant runs in a fresh interpreter on the same texts; seconds = cold (imports + model load "
                 "included), warm_seconds = after its engine is built (model load excluded) to its last output; "
                 f"medians of {max(1, args.repeat)} interleaved rounds (every round under `rounds`)"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "command": "python -m benchmarks.bench_anonymize " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out["meets_targets"] = all(out["ratios"][k] >= t for k, t in out["targets"].items())
    out["meets_targets_warm"] = all(out["ratios"]["warm_" + k] >= t for k, t in out["targets"].items())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"records/s: stage {stage_rps}, naive {res['naive']['records_per_s']}, "
          f"ner_only {res['ner_only']['records_per_s']}")
    print(f"cold (model load included): stage/naive = {out['ratios']['stage_vs_naive']}x (target >= 5), "
          f"stage/ner_only = {out['ratios']['stage_vs_ner_only']}x (target >= 0.7)")
    print(f"warm (model load excluded): stage/naive = {out['ratios']['warm_stage_vs_naive']}x, "
          f"stage/ner_only = {out['ratios']['warm_stage_vs_ner_only']}x, "
          f"stage/naive_registry = {out['ratios']['warm_stage_vs_naive_registry']}x (same recognizers)")
    return out


if __name__ == "__main__":
    main()
