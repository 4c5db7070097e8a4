"""`make bench`: every benchmark in turn, each in its own interpreter (cold imports, no shared state), with its
default arguments; each writes benchmarks/results/<name>.json, and this writes benchmarks/results/run_all.json
(exit status and wall time per benchmark). Several take tens of minutes on 2 cores; `--only` picks some.

    .venv/bin/python -m benchmarks.run_all
    .venv/bin/python -m benchmarks.run_all --only bench_demo,bench_label_noise
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["bench_demo", "bench_ingest", "bench_pii_speed", "bench_pii_quality", "bench_anonymize", "bench_label_noise",
         "bench_orchestration", "bench_train"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default=",".join(ORDER), help="comma-separated benchmark modules")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown:
        print(f"run_all: unknown benchmark(s) {unknown}; known: {ORDER}", file=sys.stderr)
        return 2
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    summary: dict[str, dict] = {}
    for name in names:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"], cwd=ROOT, env=env)
        summary[name] = {"exit": rc, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"== {name}: exit {rc} in {summary[name]['seconds']} s", flush=True)
    out = ROOT / "benchmarks" / "results" / "run_all.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"benchmarks": summary, "loadavg_at_end": list(os.getloadavg())}, indent=2) + "\n")
    return 0 if all(v["exit"] == 0 for v in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
