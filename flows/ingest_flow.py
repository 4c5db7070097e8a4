"""Land new source drops from a watched folder into the raw folder and version them with `dvc add`.

A drop is any file in `watch_dir`. Its kind comes from its extension (the source kinds of schemas/sources.yaml);
a file of an unknown kind or an empty one moves to `<watch_dir>/rejected/` and is counted, never read. Accepted files
are copied atomically into `paths.raw` (temp file + rename: a half-copied source never appears under its name), then
removed from the inbox; `dvc add` records the new raw version (restricted remote). Optionally the pipeline flow runs
right after. Logs and results carry counts only: file contents are never opened, file names never logged.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NONE as NO_CACHE

from pipeline import dvcops
from pipeline.io import atomic_path, sha256_file

KIND_BY_SUFFIX = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".eml": "eml",
    ".sqlite": "sql",
    ".sqlite3": "sql",
    ".db": "sql",
    ".parquet": "parquet",
}
# where a top-level file of this kind lands under the raw folder (the demo layout keeps e-mails in emails/)
SUBDIR_BY_KIND = {"eml": "emails"}
REJECTED = "rejected"
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload")


def _target(raw: Path, rel: Path, kind: str) -> Path:
    if len(rel.parts) > 1:  # a nested drop keeps its layout (emails/x.eml stays emails/x.eml)
        return raw / rel
    return raw / SUBDIR_BY_KIND.get(kind, "") / rel.name


@task(name="land-files", persist_result=False, cache_policy=NO_CACHE)
def land_files(watch_dir: str, raw_dir: str, move: bool = True, min_age_seconds: float = 0) -> dict[str, Any]:
    """Copy accepted drops into the raw folder atomically; returns counts by outcome and kind."""
    watch, raw = Path(watch_dir), Path(raw_dir)
    counts: Counter = Counter()
    kinds: Counter = Counter()
    now = time.time()
    files = sorted(
        p for p in watch.rglob("*")
        if p.is_file() and REJECTED not in p.relative_to(watch).parts[:1]
        and not any(part.startswith(".") for part in p.relative_to(watch).parts)
    )
    for src in files:
        rel = src.relative_to(watch)
        if src.name.endswith(IN_PROGRESS_SUFFIXES) or now - src.stat().st_mtime < min_age_seconds:
            counts["waiting"] += 1
            continue
        kind = KIND_BY_SUFFIX.get(src.suffix.lower())
        reason = "unknown_kind" if kind is None else ("empty" if src.stat().st_size == 0 else None)
        if reason:
            dest = watch / REJECTED / reason / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), dest)
            counts[f"rejected_{reason}"] += 1
            continue
        target = _target(raw, rel, kind)
        if target.exists() and sha256_file(target) == sha256_file(src):
            counts["unchanged"] += 1
        else:
            counts["updated" if target.exists() else "landed"] += 1
            kinds[kind] += 1
            with atomic_path(target, suffix=src.suffix) as tmp:
                shutil.copyfile(src, tmp)
        if move:
            src.unlink()
    result = {"counts": dict(sorted(counts.items())), "kinds": dict(sorted(kinds.items()))}
    get_run_logger().info("drops: %s; kinds: %s", result["counts"] or "none", result["kinds"] or "none")
    return result


@task(name="dvc-add", persist_result=False, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def track_raw(repo: str, raw_rel: str) -> None:
    dvcops.add([raw_rel], repo, remote=dvcops.RESTRICTED_REMOTE)
    get_run_logger().info("dvc add done")


@flow(name="fraudslm-ingest", persist_result=False, log_prints=False)
def ingest_flow(
    watch_dir: str = "data/inbox",
    repo: str = ".",
    move: bool = True,
    min_age_seconds: float = 60,
    commit: bool = False,
    run_pipeline: bool = False,
    pipeline_parameters: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """Land drops from `watch_dir` (relative to `repo`) into paths.raw, `dvc add` it, optionally run the pipeline.

    min_age_seconds: files modified more recently are left for the next run (still being written).
    """
    from pipeline.config import load_params

    root = Path(repo).resolve()
    watch = Path(watch_dir) if Path(watch_dir).is_absolute() else root / watch_dir
    raw_rel = load_params(root / "params.yaml").paths.raw
    watch.mkdir(parents=True, exist_ok=True)
    landed = land_files(str(watch), str(root / raw_rel), move=move, min_age_seconds=min_age_seconds)
    new = landed["counts"].get("landed", 0) + landed["counts"].get("updated", 0)
    result: dict[str, Any] = {**landed, "tracked": False, "commit": None, "pipeline": None}
    if new:
        track_raw(str(root), raw_rel)
        result["tracked"] = True
        if commit:
            result["commit"] = dvcops.git_commit(root, [f"{raw_rel}.dvc"], f"source drop: {new} file(s)")
    if run_pipeline and new:
        from flows.pipeline_flow import pipeline_flow

        result["pipeline"] = pipeline_flow(repo=str(root), commit=commit, **(pipeline_parameters or {}))
    return result


if __name__ == "__main__":  # pragma: no cover
    ingest_flow()
