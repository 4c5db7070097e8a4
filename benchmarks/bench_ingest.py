"""Ingest benchmark: throughput and peak memory on ../shared/data/card_transactions/transactions.csv (268,043 rows)
and on a 4x concatenation of it (ids made unique, written to a temp folder), to show that memory stays flat as the
input grows (the readers stream in chunks of `ingest.chunk_rows`; records are written row group by row group).

    .venv/bin/python -m benchmarks.bench_ingest

Every measurement runs in its own process (its own peak RSS, from getrusage). Baselines measured in the same run:
- `imports`: a process that only imports the stage (its RSS is the floor under every ingest number);
- `pandas.read_csv`: the plain pandas reader on the same file (no validation, no locators, no outputs), which holds
  the whole table in memory. Ratios: ingest rows/s over pandas rows/s; peak RSS at 4x over peak RSS at 1x.
Writes benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT.parent / "shared" / "data" / "card_transactions" / "transactions.csv"
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _child(mode: str, arg: str, out: str) -> None:
    if mode == "imports":
        import pipeline.ingest  # noqa: F401
        from pipeline.sources.dedup import Deduper

        Deduper(0.85, 128, 5)  # datasketch / scipy imports too
        print(json.dumps({"peak_rss_mb": _rss_mb()}))
        return
    if mode == "pandas":
        import pandas as pd

        t0, c0 = time.perf_counter(), time.process_time()
        df = pd.read_csv(arg)
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(json.dumps({"rows": len(df), "seconds": round(dt, 3), "cpu_seconds": round(cpu, 3), "peak_rss_mb": _rss_mb()}))
        return
    from pipeline.config import load_params
    from pipeline.ingest import run_ingest

    params = load_params(ROOT / "params.yaml")
    t0, c0 = time.perf_counter(), time.process_time()
    m = run_ingest(Path(arg), Path(out), params, ground_truth=Path(out) / "no-truth")
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps({"rows": m["totals"]["read"], "accepted": m["totals"]["accepted"], "seconds": round(dt, 3),
                      "cpu_seconds": round(cpu, 3), "peak_rss_mb": _rss_mb()}))


def _run(mode: str, arg: str = "-", out: str = "-") -> dict:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_ingest", "--child", mode, arg, out],
                          cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} failed: {proc.stderr.strip().splitlines()[-1:]}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    if "rows" in res:
        res["rows_per_s"] = round(res["rows"] / res["seconds"], 1)
        res["rows_per_cpu_s"] = round(res["rows"] / max(res["cpu_seconds"], 1e-9), 1)
    return res


def _concat(src: Path, dst: Path, copies: int) -> int:
    """Header once, then `copies` copies of the body with the transaction id prefixed by the copy number."""
    rows = 0
    with open(src, encoding="utf-8", newline="") as fh, open(dst, "w", encoding="utf-8", newline="") as out:
        header = fh.readline()
        out.write(header)
        body = fh.readlines()
        for k in range(copies):
            for line in body:
                out.write(f"{k}{line}" if k else line)  # 872795 -> 1872795: ids stay unique integers
                rows += 1
    return rows


def _config(folder: Path, location: Path) -> Path:
    cfg = {
        "version": 1,
        "allowed_roots": [str(location.parent)],
        "sources": [{
            "name": "card_transactions",
            "kind": "csv",
            "location": str(location),
            "key": "TRANSACTION_ID",
            "group": "CUSTOMER_ID",
            "timestamp": {"field": "TX_DATETIME", "format": "%Y-%m-%d %H:%M:%S"},
            "label": {"field": "TX_FRAUD", "mapping": {"1": 1, "0": 0}},
            "fields": {"TX_AMOUNT": "amount", "TERMINAL_ID": "terminal_id"},
            "text": "card payment of {TX_AMOUNT} at terminal {TERMINAL_ID} on {TX_DATETIME}",
            "dedup": False,
        }],
    }
    import yaml

    p = folder / f"sources_{location.stem}.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return p


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=3, metavar=("MODE", "ARG", "OUT"))
    ap.add_argument("--copies", type=int, default=4)
    args = ap.parse_args()
    if args.child:
        _child(*args.child)
        return
    if not SOURCE.exists():
        raise SystemExit(f"{SOURCE} not found (../shared/data is needed for this benchmark)")
    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        tmp_path = Path(tmp)
        big = tmp_path / f"transactions_x{args.copies}.csv"
        n_big = _concat(SOURCE, big, args.copies)
        imports = _run("imports")
        results = {}
        for label, path in (("x1", SOURCE), (f"x{args.copies}", big)):
            cfg = _config(tmp_path, path)
            ing = _run("ingest", str(cfg), str(tmp_path / f"out_{label}"))
            pdr = _run("pandas", str(path))
            results[label] = {
                "file_bytes": path.stat().st_size,
                "ingest": ing,
                "pandas_read_csv": pdr,
                "ingest_over_pandas_rows_per_s": round(ing["rows_per_s"] / pdr["rows_per_s"], 3),
                "ingest_rss_above_imports_mb": round(ing["peak_rss_mb"] - imports["peak_rss_mb"], 1),
            }
            print(f"{label}: {ing['rows']:>9,} rows  ingest {ing['rows_per_s']:>10,.0f} rows/s "
                  f"({ing['rows_per_cpu_s']:,.0f}/cpu-s) peak {ing['peak_rss_mb']:.0f} MB | "
                  f"pandas.read_csv {pdr['rows_per_s']:>10,.0f} rows/s peak {pdr['peak_rss_mb']:.0f} MB")
        big_label = f"x{args.copies}"
        summary = {
            "rows_x1": results["x1"]["ingest"]["rows"],
            f"rows_{big_label}": n_big,
            "ingest_peak_rss_ratio": round(results[big_label]["ingest"]["peak_rss_mb"] / results["x1"]["ingest"]["peak_rss_mb"], 3),
            "ingest_rss_above_imports_ratio": round(
                results[big_label]["ingest_rss_above_imports_mb"] / max(results["x1"]["ingest_rss_above_imports_mb"], 1e-9), 3),
            "pandas_peak_rss_ratio": round(results[big_label]["pandas_read_csv"]["peak_rss_mb"] / results["x1"]["pandas_read_csv"]["peak_rss_mb"], 3),
            "ingest_rows_per_s_ratio": round(results[big_label]["ingest"]["rows_per_s"] / results["x1"]["ingest"]["rows_per_s"], 3),
        }
        print(f"peak RSS {big_label}/x1: ingest {summary['ingest_peak_rss_ratio']} "
              f"(above imports {summary['ingest_rss_above_imports_ratio']}), pandas.read_csv {summary['pandas_peak_rss_ratio']}; "
              f"imports alone {imports['peak_rss_mb']} MB")
    report = {
        "benchmark": "ingest",
        "source": str(SOURCE.relative_to(ROOT.parent)),
        "chunk_rows": __import__("pipeline.config", fromlist=["load_params"]).load_params(ROOT / "params.yaml").ingest.chunk_rows,
        "imports_peak_rss_mb": imports["peak_rss_mb"],
        "runs": results,
        "summary": summary,
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.io import write_json

    write_json(RESULTS, report)
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
