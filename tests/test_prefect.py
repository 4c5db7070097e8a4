"""Prefect orchestration over the DVC stages: order from DVC, one task per stage, no PII in Prefect's database,
result storage or logs; the ingest flow; and (slow) a real server + served deployment run through the API."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prefect.states import Failed

from flows.pipeline_flow import _retry_transient
from pipeline import dvcops
from pipeline.errors import ConfigError

from conftest import TEST_KEY


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """One Prefect test server (temporary SQLite database) for this module; result storage in a temp folder."""
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    storage = tmp_path_factory.mktemp("prefect-storage")
    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: storage}):
        with prefect_test_harness(server_startup_timeout=240):
            from prefect.settings import PREFECT_SERVER_DATABASE_CONNECTION_URL

            db = PREFECT_SERVER_DATABASE_CONNECTION_URL.value().split("///", 1)[1]
            yield {"db": Path(db), "storage": storage}


def _require_split(ws: Path) -> None:
    if "split" not in dvcops.read_lock(ws).get("stages", {}):
        pytest.skip("quality/split stage code not available yet")


def _secrets(ws: Path) -> list[str]:
    """Values that must never reach Prefect: the demo canaries, structured PII values, the pseudonym key."""
    truth = ws / "data" / "ground_truth"
    values = [c["value"] for c in json.loads((truth / "canaries.json").read_text())]
    for line in (truth / "pii_spans.jsonl").read_text().splitlines()[:300]:
        span = json.loads(line)
        if span["type"] in ("CREDIT_CARD", "IBAN_CODE", "EMAIL_ADDRESS") and len(span["value"]) >= 8:
            values.append(span["value"])
    return sorted(set(values)) + [TEST_KEY]


def _flow_run_data(flow_run_id, expect_log: str = ""):
    """Task runs, logs and artifacts of a flow run (logs are sent in the background: wait for `expect_log`)."""
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    deadline = time.monotonic() + 60
    while True:
        data = _read_flow_run(flow_run_id)
        if expect_log in "\n".join(log.message for log in data[2]) or time.monotonic() > deadline:
            return data
        time.sleep(1)


def _read_flow_run(flow_run_id):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        flow_run = client.read_flow_run(flow_run_id)
    return flow_run, tasks, logs, artifacts


def test_retry_only_transient_failures():
    assert _retry_transient(None, None, Failed(data=dvcops.StageFailed("train", None, "killed"))) is True
    assert _retry_transient(None, None, Failed(data=dvcops.StageFailed("train", -9, "killed"))) is True
    assert _retry_transient(None, None, Failed(data=dvcops.StageFailed("anonymize", 1, "gate failed"))) is False
    assert _retry_transient(None, None, Failed(data=dvcops.StageFailed("quality", 2, "bad config"))) is False
    assert _retry_transient(None, None, Failed(data=ConfigError("bad"))) is False


def test_pipeline_flow_runs_dvc_stages_as_tasks_without_pii(harness, dvc_built, tmp_path):
    from flows.pipeline_flow import REPORT_ARTIFACT, SUMMARY_ARTIFACT, pipeline_flow

    ws = dvcops.copy_workspace(dvc_built, tmp_path / "repo", remotes=tmp_path / "remotes")
    order = dvcops.stage_order(ws)
    lock = dvcops.read_lock(ws)["stages"]
    until = [s for s in order if s in lock][-1]  # split (earlier while later stages' code is not there yet)
    changed, override = ("quality", {"quality.k_folds": 4}) if "quality" in lock else \
        ("anonymize", {"anonymize.score_threshold": 0.45})
    state = pipeline_flow(repo=str(ws), until=until, overrides=override, commit=True, push=True, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    expected = order[: order.index(until) + 1]
    assert [s["stage"] for s in result["stages"]] == expected
    status = {s["stage"]: s["status"] for s in result["stages"]}
    for stage in expected:
        want = "skipped" if expected.index(stage) < expected.index(changed) else "ran"
        assert status[stage] == want, (stage, status)
    assert result["overrides"] == sorted(override)

    # committed and tagged; the params override is part of the commit; data pushed
    assert result["commit"] and result["tag"].startswith("data-v")
    assert dvcops.git(["status", "--porcelain", "--", "dvc.lock", "params.yaml"], ws).stdout == ""
    assert result["tag"] in dvcops.git(["tag", "-l"], ws).stdout
    key, value = next(iter(override.items()))
    assert f"{key.split('.')[-1]}: {value}" in dvcops.git(["show", "HEAD:params.yaml"], ws).stdout
    assert any((tmp_path / "remotes" / "shared").rglob("*.dir")) or any((tmp_path / "remotes" / "shared").rglob("*"))

    # one task per stage, in DVC's order
    flow_run, tasks, logs, artifacts = _flow_run_data(state.state_details.flow_run_id, f"stage {changed}: ran")
    stage_tasks = sorted((t for t in tasks if t.name in expected),
                         key=lambda t: t.start_time or t.expected_start_time)
    assert [t.name for t in stage_tasks] == expected
    assert all(t.state.is_completed() for t in stage_tasks)
    keys = {a.key for a in artifacts}
    assert SUMMARY_ARTIFACT in keys and REPORT_ARTIFACT not in keys  # no report yet: no link
    summary = next(a for a in artifacts if a.key == SUMMARY_ARTIFACT).data
    assert f"| {changed} | ran |" in summary
    # each stage's headline figures, chosen by its contract (not the first metric keys alphabetically)
    from flows.pipeline_flow import _stage_folders, stage_headline
    from pipeline.contracts import STAGE_BY_NAME

    head = stage_headline(changed, ws / _stage_folders(ws)[changed])
    assert head and list(head) == [k for k in STAGE_BY_NAME[changed].metrics.HEADLINE if k in head]
    row = next(line for line in summary.splitlines() if line.startswith(f"| {changed} | ran |"))
    assert all(f"{k} " in row for k in head), row

    # nothing sensitive in the logs, the task results, Prefect's database or its result storage
    secrets = _secrets(ws)
    log_text = "\n".join(log.message for log in logs)
    assert f"stage {changed}: ran" in log_text
    assert not [s for s in secrets if s in log_text]
    assert not [s for s in secrets if s in json.dumps(result, default=str)]
    assert not [s for s in secrets if s in summary]
    blobs = [harness["db"].read_bytes()] + [p.read_bytes() for p in Path(harness["db"]).parent.rglob("*-wal")]
    blobs += [p.read_bytes() for p in harness["storage"].rglob("*") if p.is_file()]
    assert any(f"stage {changed}: ran".encode() in b for b in blobs), "the search must see the run's own logs"
    leaked = [s for s in secrets for b in blobs if s.encode() in b]
    assert not leaked, f"{len(leaked)} sensitive value(s) in Prefect's database/storage"


def test_pipeline_flow_rejects_bad_overrides(harness, dvc_template, tmp_path):
    from flows.pipeline_flow import pipeline_flow

    ws = dvcops.copy_workspace(dvc_template, tmp_path / "repo")
    before = (ws / "params.yaml").read_text()
    state = pipeline_flow(repo=str(ws), overrides={"quality.no_such_knob": 1}, return_state=True)
    assert state.is_failed()
    assert (ws / "params.yaml").read_text() == before
    state = pipeline_flow(repo=str(ws), stages=["no-such-stage"], return_state=True)
    assert state.is_failed()


def test_ingest_flow_lands_drops_and_versions_them(harness, dvc_template, tmp_path):
    from flows.ingest_flow import ingest_flow

    ws = dvcops.copy_workspace(dvc_template, tmp_path / "repo")
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    raw = ws / "data" / "01_raw"
    (inbox / "transactions_2.csv").write_bytes((raw / "transactions.csv").read_bytes())
    (inbox / "chats.jsonl").write_bytes((raw / "chats.jsonl").read_bytes())  # identical to the landed one
    (inbox / "notes.txt").write_text("unknown kind")
    (inbox / "empty.parquet").write_bytes(b"")
    (inbox / "x.eml.part").write_text("still uploading")
    eml = next((raw / "emails").glob("*.eml"))
    (inbox / "new_mail.eml").write_bytes(eml.read_bytes())
    before = (ws / "data" / "01_raw.dvc").read_text()

    result = ingest_flow(watch_dir=str(inbox), repo=str(ws), min_age_seconds=0, commit=True)
    assert result["counts"] == {
        "landed": 2, "rejected_empty": 1, "rejected_unknown_kind": 1, "unchanged": 1, "waiting": 1
    }
    assert result["kinds"] == {"csv": 1, "eml": 1}
    assert (raw / "transactions_2.csv").exists() and (raw / "emails" / "new_mail.eml").exists()
    assert (inbox / "rejected" / "unknown_kind" / "notes.txt").exists() and (inbox / "x.eml.part").exists()
    assert not (inbox / "transactions_2.csv").exists()
    after = (ws / "data" / "01_raw.dvc").read_text()
    assert after != before and "remote: restricted" in after
    assert result["commit"] and dvcops.git(["status", "--porcelain", "--", "data/01_raw.dvc"], ws).stdout == ""
    assert dvcops.status(ws, ["data/01_raw.dvc"]) == {}
    again = ingest_flow(watch_dir=str(inbox), repo=str(ws), min_age_seconds=0)
    assert again["tracked"] is False and again["counts"] == {"waiting": 1}


@pytest.mark.slow
def test_flow_scales_anonymize_out_on_dask(harness, dvc_built, tmp_path):
    """executor=dask (a LocalCluster here; dask_address for a real scheduler) reruns anonymize on Dask through a
    params override; the anonymized records are the same as the local run's, so nothing downstream reruns."""
    from flows.pipeline_flow import pipeline_flow

    ws = dvcops.copy_workspace(dvc_built, tmp_path / "repo")
    _require_split(ws)
    before = dvcops.read_lock(ws)
    result = pipeline_flow(repo=str(ws), until="split", executor="dask")
    assert result["overrides"] == ["anonymize.executor"]
    assert "executor: dask" in (ws / "params.yaml").read_text()
    status = {s["stage"]: s["status"] for s in result["stages"]}
    assert status["anonymize"] == "ran" and status["ingest"] == "skipped"
    metrics = json.loads((ws / "data" / "03_anonymized" / "metrics.json").read_text())
    assert "dask" in json.dumps(metrics)
    after = dvcops.read_lock(ws)
    assert dvcops.out_hashes(after, "anonymize")["data/03_anonymized/records.parquet"] == \
        dvcops.out_hashes(before, "anonymize")["data/03_anonymized/records.parquet"]
    assert status["quality"] == status["split"] == "skipped"


# ---------------------------------------------------------------------------------------------------------------
# a real server, a served deployment, a run through the API


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(predicate, timeout: float, what: str, procs=()):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"{what}: process exited with {p.returncode}")
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_served_deployment_runs_on_a_real_server(dvc_template, tmp_path):
    ws = dvcops.copy_workspace(dvc_template, tmp_path / "repo", remotes=tmp_path / "remotes")
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "prefect-home"), PREFECT_API_URL=api,
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false")
    bindir = Path(sys.executable).parent
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = []
    try:
        server = subprocess.Popen(
            [str(bindir / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=open(logs / "server.log", "w"), stderr=subprocess.STDOUT,
        )
        procs.append(server)
        _wait(lambda: urllib.request.urlopen(f"{api}/health", timeout=2).status == 200, 300, "prefect server",
              [server])
        code = ("from flows.deployments import serve_all; "
                f"serve_all(repo={str(ws)!r}, names=['nightly'], with_schedules=False)")
        runner = subprocess.Popen([sys.executable, "-c", code], cwd=ws, env=env,
                                  stdout=open(logs / "serve.log", "w"), stderr=subprocess.STDOUT)
        procs.append(runner)

        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(api) as client:
            _wait(lambda: client.read_deployment_by_name("fraudslm-pipeline/nightly") is not None, 180,
                  "deployment", [runner])
            deployment = client.read_deployment_by_name("fraudslm-pipeline/nightly")
            assert deployment.parameters["repo"] == str(ws)
            flow_run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"until": "ingest", "pull": False}
            )
            _wait(lambda: client.read_flow_run(flow_run.id).state.is_final(), 420, "flow run", [runner])
            final = client.read_flow_run(flow_run.id)
        assert final.state.is_completed(), (final.state.message, (logs / "serve.log").read_text()[-3000:])
        assert (ws / "data" / "02_ingested" / "records.parquet").exists()
        assert "ingest" in dvcops.read_lock(ws)["stages"]
        assert dvcops.git(["tag", "-l", "data-v*"], ws).stdout.strip()  # nightly commits and tags
        assert any((tmp_path / "remotes" / "restricted").rglob("*"))  # and pushes
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
