"""Throughput of the anonymize stage against two baselines measured in the same run, on the same demo texts.

* stage     : `run_anonymize` end to end (detector build in the workers, detection, batch sweep, replacement, column
              policy, leakage gate, Parquet + reports), local executor with 2 worker processes;
* naive     : per-record `AnalyzerEngine.analyze` + `AnonymizerEngine.anonymize` (Presidio defaults, same spaCy model);
* ner_only  : spaCy NER alone, `nlp.pipe(texts, n_process=2)` with every other pipe disabled.

Every variant is timed from a cold start of its engine (model load included) to its last output.
Targets (issue): stage >= 5x naive, stage >= 0.7x ner_only.

    .venv/bin/python -m benchmarks.bench_anonymize [--n 3000] [--naive-limit 0]

Writes benchmarks/results/anonymize.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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

    params = load_params(
        REPO / "params.yaml",
        {"anonymize.workers": workers, "anonymize.executor": "local", "anonymize.partition_rows": 250,
         "anonymize.registry": str(REPO / "schemas" / "recognizers.yaml")},
    )
    m = run_anonymize(inp, out, params)
    sec = time.perf_counter() - t
    return {"seconds": sec, "detect_seconds": m["detect_seconds"], "gate_passed": m["gate"]["passed"],
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
    n_ents = 0
    for text in texts:
        results = analyzer.analyze(text=text, language="en")
        n_ents += len(results)
        anonymizer.anonymize(text=text, analyzer_results=results)
    return {"seconds": time.perf_counter() - t, "entities": n_ents, "records": len(texts)}


def bench_ner(texts: list[str], model: str, n_process: int) -> dict:
    t = time.perf_counter()
    import spacy

    nlp = spacy.load(model)
    keep = {"ner", "tok2vec"}
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in keep])
    n_ents = sum(len(doc.ents) for doc in nlp.pipe(texts, n_process=n_process, batch_size=64))
    return {"seconds": time.perf_counter() - t, "entities": n_ents, "records": len(texts), "pipes": nlp.pipe_names}


def _variant(name: str, inp: Path, out: Path, workers: int, naive_limit: int) -> dict:
    """Run one variant in a fresh interpreter, so each pays its own imports and model load (cold start)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_anonymize", "--variant", name, "--inp", str(inp), "--out", str(out),
           "--workers", str(workers), "--naive-limit", str(naive_limit)]
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
        else:
            res = bench_naive(texts[: args.naive_limit] if args.naive_limit else texts, model)
    print(json.dumps(res))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="demo size (records)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--naive-limit", type=int, default=0, help="time the naive loop on the first N texts only (0: all)")
    ap.add_argument("--variant", choices=["stage", "naive", "ner_only"], help=argparse.SUPPRESS)
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
        res: dict = {}
        for name in ("ner_only", "stage", "naive"):
            res[name] = _variant(name, inp, base / "03", args.workers, args.naive_limit)
            print(f"{name:9s} {res[name]['seconds']:.1f} s ({res[name]['records']} records)", file=sys.stderr)

    for v in res.values():
        v["records_per_s"] = round(v["records"] / v["seconds"], 2)
        v["seconds"] = round(v["seconds"], 2)
    stage_rps = res["stage"]["records_per_s"]
    out = {
        "benchmark": "anonymize",
        "n_texts": len(texts),
        "workers": args.workers,
        "spacy_model": model,
        "variants": res,
        "ratios": {
            "stage_vs_naive": round(stage_rps / res["naive"]["records_per_s"], 2),
            "stage_vs_ner_only": round(stage_rps / res["ner_only"]["records_per_s"], 2),
        },
        "targets": {"stage_vs_naive": 5.0, "stage_vs_ner_only": 0.7},
        "note": "each variant timed in a fresh interpreter from before its engine imports to its last output",
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                    "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "command": "python -m benchmarks.bench_anonymize " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    out["meets_targets"] = all(out["ratios"][k] >= t for k, t in out["targets"].items())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"records/s: stage {stage_rps}, naive {res['naive']['records_per_s']}, "
          f"ner_only {res['ner_only']['records_per_s']}")
    print(f"stage/naive = {out['ratios']['stage_vs_naive']}x (target >= 5), "
          f"stage/ner_only = {out['ratios']['stage_vs_ner_only']}x (target >= 0.7)")
    return out


if __name__ == "__main__":
    main()
