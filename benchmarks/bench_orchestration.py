"""Orchestration overhead and incremental reruns: DVC and Prefect over the same stages.

    .venv/bin/python -m benchmarks.bench_orchestration                 # demo n=1000, stages up to split
    .venv/bin/python -m benchmarks.bench_orchestration --n 300 --until report

Baseline (measured in the same run): the stage commands of dvc.yaml run one after another by hand (`bash -c CMD`,
no DVC, no Prefect). Then, in fresh copies of the same workspace:
  - `dvc repro UNTIL`                      full run through DVC      -> ratio to the baseline (DVC overhead)
  - `dvc repro UNTIL` again                no-op (everything cached) -> seconds, and stages that ran (must be 0)
  - quality.k_folds changed, `dvc repro`   incremental run           -> ratio to the full run, stages that ran
  - the Prefect pipeline flow, no-op       one task per stage        -> seconds over the plain no-op dvc repro
Writes benchmarks/results/orchestration.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "orchestration.json"
KEY = "bench-orchestration-key-0123456789abcdef"


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t0, 2)


def _ran(proc) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--until", default="split")
    args = ap.parse_args(argv)
    os.environ.setdefault("FRAUDSLM_PSEUDONYM_KEY", KEY)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from pipeline import dvcops

    tiny = {"demo.n": args.n, "quality.k_folds": 3, "train.epochs": 1, "train.max_length": 32,
            "train.max_train_samples": 256, "compress.latency_runs": 5, "compress.distill_epochs": 1}
    with tempfile.TemporaryDirectory(prefix="bench-orch-") as tmp:
        tmp = Path(tmp)
        template = dvcops.make_workspace(tmp / "template", overrides=tiny, remotes=tmp / "remotes")
        subprocess.run([str(Path(sys.executable).parent / "fraudslm"), "demo-data", "--out", "data/01_raw"],
                       cwd=template, check=True, capture_output=True, env=dvcops.tool_env())
        dvcops.add(["data/01_raw", "data/ground_truth"], template)
        dvcops.git_commit(template, ["data/01_raw.dvc", "data/ground_truth.dvc"], "sources")
        order = dvcops.stage_order(template)
        stages = dvcops.select_stages(order, until=args.until)

        # baseline: the same commands, by hand
        from dvc.repo import Repo

        with Repo(str(template)) as r:
            cmds = {s.name: s.cmd for s in r.index.stages if getattr(s, "name", None) in stages}
        manual = dvcops.copy_workspace(template, tmp / "manual")
        per_stage = {}
        t0 = time.perf_counter()
        for st in stages:
            _, per_stage[st] = _timed(lambda: subprocess.run(["bash", "-c", cmds[st]], cwd=manual, check=True,
                                                            capture_output=True, env=dvcops.tool_env()))
        baseline = round(time.perf_counter() - t0, 2)

        ws = dvcops.copy_workspace(template, tmp / "dvc")
        full, full_s = _timed(lambda: dvcops.run_dvc(["repro", args.until], ws))
        noop, noop_s = _timed(lambda: dvcops.run_dvc(["repro", args.until], ws))
        dvcops.git_commit(ws, dvcops.tracked_state_files(ws), "bench run")
        inc = {}
        if "quality" in stages:
            dvcops.apply_overrides(ws / "params.yaml", {"quality.k_folds": 4})
            proc, inc_s = _timed(lambda: dvcops.run_dvc(["repro", args.until], ws))
            inc = {"seconds": inc_s, "ran": _ran(proc), "ratio_to_full": round(inc_s / full_s, 3)}
            dvcops.git_commit(ws, dvcops.tracked_state_files(ws), "k_folds=4")

        from prefect.testing.utilities import prefect_test_harness

        from flows.pipeline_flow import pipeline_flow

        with prefect_test_harness(server_startup_timeout=300):
            res, flow_s = _timed(lambda: pipeline_flow(repo=str(ws), until=args.until))
        result = {
            "benchmark": "orchestration",
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "demo_n": args.n,
            "stages": stages,
            "baseline_manual_s": baseline,
            "baseline_per_stage_s": per_stage,
            "dvc_full_repro_s": full_s,
            "dvc_full_ratio_to_manual": round(full_s / baseline, 3),
            "dvc_full_ran": _ran(full),
            "dvc_noop_repro_s": noop_s,
            "dvc_noop_ran": _ran(noop),
            "quality_param_change": inc,
            "prefect_flow_noop_s": flow_s,
            "prefect_flow_noop_statuses": {s["stage"]: s["status"] for s in res["stages"]},
            "prefect_noop_overhead_over_dvc_noop_s": round(flow_s - noop_s, 2),
        }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(result, indent=2, sort_keys=True))
    return result


if __name__ == "__main__":
    main()
