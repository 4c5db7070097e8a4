"""The pipeline as a Prefect flow: one task per DVC stage, in the order DVC reports, then commit, tag and push.

Prefect owns *when and where* (schedules, retries, parameters, run history); DVC owns *what* (the DAG, caching,
versions). The flow never re-encodes the stage order and holds no stage logic.

PII safety: tasks receive stage names and paths and return plain dicts of numbers; task and flow results are not
persisted, no cache key is computed from data (cache_policy=NONE), stage output is captured and never logged. Logs
carry stage names, statuses, timings and counts only. The pseudonym key goes from the environment or a Prefect
Secret block straight into the stage subprocess' environment: never a parameter, a result, a log line or a file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NONE as NO_CACHE

from pipeline import dvcops
from pipeline.errors import ConfigError

KEY_ENV = "FRAUDSLM_PSEUDONYM_KEY"
DEFAULT_KEY_BLOCK = "fraudslm-pseudonym-key"
SUMMARY_ARTIFACT = "fraudslm-pipeline-summary"
REPORT_ARTIFACT = "fraudslm-audit-report"

# Environment for the stage subprocesses (the key when it comes from a Secret block). Module state, not a task
# parameter, so that it never reaches Prefect's database.
_STAGE_ENV: dict[str, str] = {}


def _retry_transient(task_, task_run, state) -> bool:
    """Retry crashes and kills; never a failed gate (exit 1) or a config error (exit 2)."""
    exc = getattr(state, "data", None)
    if isinstance(exc, dvcops.StageFailed):
        return exc.transient
    return not isinstance(exc, ConfigError)


@task(
    name="dvc-stage",
    task_run_name="{stage}",
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=_retry_transient,
    persist_result=False,
    cache_policy=NO_CACHE,
    log_prints=False,
)
def run_stage(stage: str, repo: str, folder: Optional[str], force: bool = False) -> dict[str, Any]:
    """`dvc repro --single-item STAGE`; returns the status, the time and the stage's headline figures (chosen by
    its contract in pipeline.contracts: numbers, booleans and variant names only)."""
    logger = get_run_logger()
    result = dvcops.repro_stage(stage, repo, env=_STAGE_ENV, force=force)
    metrics = stage_headline(stage, Path(repo) / folder) if folder else {}
    logger.info("stage %s: %s in %.1f s (%d headline figures)", stage, result.status, result.seconds, len(metrics))
    return {**result.to_dict(), "metrics": metrics}


def stage_headline(stage: str, folder: Path) -> dict[str, Any]:
    """The headline figures of a stage's metrics.json, read through its contract ({} when absent or invalid)."""
    from pipeline.contracts import METRICS_FILE, STAGE_BY_NAME, read_metrics

    contract = STAGE_BY_NAME.get(stage)
    if contract is None or not (folder / METRICS_FILE).is_file():
        return {}
    try:
        return read_metrics(folder, contract.metrics).headline()
    except (ConfigError, OSError, ValueError):
        return {}


def _stage_folders(root: Path) -> dict[str, str]:
    """{stage: its output folder (relative)} from the table of stages and params.yaml."""
    from pipeline.config import load_params
    from pipeline.contracts import STAGES

    try:
        params = load_params(root / "params.yaml")
    except Exception:  # noqa: BLE001 - an invalid params.yaml fails the stages themselves, with a clear message
        return {}
    return {s.name: s.folder_path(params) for s in STAGES}


@task(name="dvc-pull", persist_result=False, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def pull_data(repo: str) -> None:
    dvcops.pull(repo)
    get_run_logger().info("dvc pull done")


@task(name="dvc-push", persist_result=False, cache_policy=NO_CACHE, retries=2, retry_delay_seconds=10)
def push_data(repo: str) -> None:
    dvcops.push(repo)
    get_run_logger().info("dvc push done (each output to its own remote)")


@task(name="git-commit", persist_result=False, cache_policy=NO_CACHE)
def commit_version(repo: str, message: str, tag: bool) -> dict[str, Optional[str]]:
    """Commit dvc.lock, params.yaml, the .dvc pointers and the metrics; tag the dataset version."""
    sha = dvcops.git_commit(repo, dvcops.tracked_state_files(repo), message)
    lock = dvcops.read_lock(repo)
    name = dvcops.dataset_tag(lock) if lock else None
    tagged = bool(tag and name and dvcops.git_tag(repo, name, f"fraudslm dataset {name}"))
    get_run_logger().info("commit %s, tag %s", (sha or "none (no change)")[:12], name if tagged else "unchanged")
    return {"commit": sha, "tag": name if tag else None}


def _stage_env(block: Optional[str], needed: bool) -> dict[str, str]:
    """The pseudonym key for the stages: environment first, then the Prefect Secret block. Fails closed."""
    if os.environ.get(KEY_ENV):
        return {}
    if block:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(block).get()
            if value:
                return {KEY_ENV: str(value)}
        except Exception:  # noqa: BLE001 - absent block: reported below without details
            pass
    if needed:
        raise ConfigError(f"{KEY_ENV} is not set and no Prefect Secret block {block!r} holds it")
    return {}


def _summary_markdown(runs: list[dict[str, Any]], changed: dict[str, Any], version: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["# fraudslm pipeline run", "", "| stage | status | seconds | headline |", "| --- | --- | ---: | --- |"]
    lines += [f"| {r['stage']} | {r['status']} | {r['seconds']:.1f} | "
              + ", ".join(f"{k} {fmt(v)}" for k, v in r["metrics"].items()) + " |" for r in runs]
    if changed:
        lines += ["", "Params overrides: " + ", ".join(f"`{k}`" for k in sorted(changed))]
    if version.get("dataset"):
        lines += ["", f"Dataset version: `{version['dataset']}`" + (f", tag `{version['tag']}`" if version.get("tag") else "")]
    return "\n".join(lines) + "\n"


@flow(name="fraudslm-pipeline", persist_result=False, log_prints=False)
def pipeline_flow(
    repo: str = ".",
    stages: Optional[list[str]] = None,
    until: Optional[str] = None,
    overrides: Optional[dict[str, Any]] = None,
    executor: Optional[str] = None,
    dask_address: Optional[str] = None,
    pull: bool = False,
    push: bool = False,
    commit: bool = False,
    tag: bool = True,
    force: bool = False,
    key_secret_block: Optional[str] = DEFAULT_KEY_BLOCK,
) -> dict[str, Any]:
    """Run the DVC pipeline in `repo`, one task per stage.

    stages / until: a subset of the DVC stages (kept in DVC order) / every stage up to and including `until`.
    overrides: dotted params (e.g. {"quality.k_folds": 3}) written into params.yaml before the run (validated; they
      become part of the run's params and of the commit). executor / dask_address: shorthand for
      anonymize.executor / anonymize.dask_address (scale the anonymize stage out on a Dask cluster).
    pull / push: `dvc pull` before, `dvc push` after. commit: commit dvc.lock + metrics and tag `data-v<date>-<hash>`.
    """
    logger = get_run_logger()
    root = Path(repo).resolve()
    ov = dict(overrides or {})
    if executor is not None:
        ov["anonymize.executor"] = executor
    if dask_address is not None:
        ov["anonymize.dask_address"] = dask_address
    changed = dvcops.apply_overrides(root / "params.yaml", ov)
    logger.info("params overrides changed %d key(s): %s", len(changed), ", ".join(sorted(changed)) or "-")

    if pull:
        pull_data(str(root))

    order = dvcops.stage_order(root)
    selected = dvcops.select_stages(order, stages, until)
    folders = _stage_folders(root)
    _STAGE_ENV.clear()
    _STAGE_ENV.update(_stage_env(key_secret_block, needed="anonymize" in selected))
    logger.info("running %d of %d DVC stage(s): %s", len(selected), len(order), ", ".join(selected))

    runs = [run_stage(stage, str(root), folders.get(stage), force=force) for stage in selected]
    _STAGE_ENV.clear()

    lock = dvcops.read_lock(root)
    version: dict[str, Any] = {"dataset": dvcops.dataset_hash(lock) if lock else None, "commit": None, "tag": None}
    if commit:
        ran = [r["stage"] for r in runs if r["status"] != "skipped"]
        message = f"pipeline run: {', '.join(ran) or 'no stage'} ran; dataset {version['dataset']}"
        if changed:
            message += "\n\nparams overrides: " + ", ".join(sorted(changed))
        version.update(commit_version(str(root), message, tag))
    if push:
        push_data(str(root))

    create_markdown_artifact(
        markdown=_summary_markdown(runs, changed, version),
        key=SUMMARY_ARTIFACT,
        description="fraudslm pipeline: stage statuses and key metrics (numbers only)",
    )
    report = _report_path(root)
    if report is not None and report.exists():
        create_link_artifact(link=report.as_uri(), link_text="audit report", key=REPORT_ARTIFACT)
    return {
        "stages": [{k: r[k] for k in ("stage", "status", "seconds")} for r in runs],
        "overrides": sorted(changed),
        **version,
        "pushed": push,
    }


def _report_path(root: Path) -> Optional[Path]:
    try:
        from pipeline.config import load_params

        return root / load_params(root / "params.yaml").paths.reports / "report.html"
    except Exception:  # noqa: BLE001 - no report configured: no link
        return None


if __name__ == "__main__":  # pragma: no cover
    pipeline_flow()
