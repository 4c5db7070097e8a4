"""Parameter-efficient methods side by side on the same splits (issue 21): LoRA, LoRA on the top k layers, IA3.

    nice -n 10 .venv/bin/python -m benchmarks.bench_peft_methods            # the demo's splits (make run first)
    ... --splits DIR --methods lora,lora_top2,ia3 --work DIR

Each method is one `python -m pipeline.cli train` subprocess (the real CLI path) on the same split folder, with the
repository's params.yaml unchanged except the method's own setting:

- `lora`:      train.peft_method=lora (the default: LoRA r/alpha/targets from params.yaml, every layer)
- `lora_topK`: train.peft_method=lora, train.top_k_layers=K
- `ia3`:       train.peft_method=ia3 (learned scaling vectors on key, value and the feed-forward output)

Everything else (learning-rate rule, epochs, class weighting, seed, threads) is the default, so the table compares
methods, not tuning. Read from each run's `metrics.json` / `timings.json`: trainable parameters, validation and test
PR-AUC (given labels), test F1 at the validation-chosen threshold, and training time. A finished method (its
metrics.json present) is not trained again.

Results: benchmarks/results/peft_methods.json (written after every method, atomically). Timings are this machine's,
measured one after another in one run; compare them within the table only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
OUT = RESULTS / "peft_methods.json"


def method_settings(name: str) -> list[str]:
    """--set overrides for a method name: lora, lora_topK, ia3."""
    if name == "lora":
        return ["train.peft_method=lora"]
    m = re.fullmatch(r"lora_top(\d+)", name)
    if m:
        return ["train.peft_method=lora", f"train.top_k_layers={int(m.group(1))}"]
    if name == "ia3":
        return ["train.peft_method=ia3"]
    raise SystemExit(f"bench_peft_methods: unknown method {name!r} (lora, lora_topK, ia3)")


def run_method(name: str, splits: Path, work: Path, params: Path) -> dict[str, Any]:
    out = work / name
    if not (out / "metrics.json").is_file():
        cmd = [sys.executable, "-m", "pipeline.cli", "train", "--in", str(splits), "--out", str(out),
               "--params", str(params)]
        for s in method_settings(name):
            cmd += ["--set", s]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"method": name, "error": f"train exited {proc.returncode}: {' | '.join(tail)}"}
        wall = time.perf_counter() - t0
    else:
        wall = None
    m = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    t = json.loads((out / "timings.json").read_text(encoding="utf-8")) if (out / "timings.json").is_file() else {}
    row = {
        "method": name, "settings": method_settings(name),
        "trainable_params": m.get("trainable_params"), "total_params": m.get("total_params"),
        "trainable_share": round(m["trainable_params"] / m["total_params"], 5) if m.get("total_params") else None,
        "learning_rate": m.get("learning_rate"), "epochs_run": m.get("epochs_run"), "best_epoch": m.get("best_epoch"),
        "val_pr_auc": m.get("val_pr_auc"), "test_pr_auc": m.get("test_pr_auc"), "test_f1": m.get("test_f1"),
        "training_time_s": t.get("training_time_s"), "threads": t.get("threads"),
        "process_wall_s": round(wall, 1) if wall is not None else None,
    }
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", default=str(REPO / "data" / "05_splits"))
    ap.add_argument("--methods", default="lora,lora_top2,ia3")
    ap.add_argument("--work", default=str(REPO / "benchmarks" / ".work" / "peft"))
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    splits, work = Path(args.splits), Path(args.work)
    if not (splits / "train.parquet").is_file():
        raise SystemExit(f"bench_peft_methods: no splits at {splits} (run `make run` first)")
    work.mkdir(parents=True, exist_ok=True)
    split_metrics = json.loads((splits / "metrics.json").read_text(encoding="utf-8")) \
        if (splits / "metrics.json").is_file() else {}
    res: dict[str, Any] = {
        "benchmark": "bench_peft_methods", "issue": 21,
        "command": "python -m benchmarks.bench_peft_methods " + " ".join(argv or sys.argv[1:]),
        "splits": {"path": os.path.relpath(splits, REPO), "data_version": split_metrics.get("data_version"),
                   "counts": split_metrics.get("counts")},
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "rule": "same split folder, params.yaml defaults except the method's own setting; given labels; "
                "test F1 at the threshold chosen on validation",
        "methods": [],
    }
    for name in [x.strip() for x in args.methods.split(",") if x.strip()]:
        row = run_method(name, splits, work, Path(args.params))
        res["methods"].append(row)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        tmp.replace(out)
        print(json.dumps(row), flush=True)
    return res


if __name__ == "__main__":
    main()
