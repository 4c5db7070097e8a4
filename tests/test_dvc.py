"""The DVC pipeline for real: a git + DVC repository in a temporary folder, the installed `fraudslm`, tiny params
(tests/conftest.py TINY_PARAMS). Covers repro, no-op repro, a quality param change rerunning quality and what
follows only, dataset diffs between versions, and push/pull through two local remotes that keep raw PII apart."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pipeline import dvcops
from pipeline.ledger import load_ledger
from pipeline.versions import diff_versions

UP_TO_SPLIT = ["ingest", "anonymize", "quality", "split"]


def _ran(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def _copy(src: Path, tmp_path: Path) -> Path:
    return dvcops.copy_workspace(src, tmp_path / "repo", remotes=tmp_path / "remotes")


def _objects(remote: Path) -> set[str]:
    """md5 of every object in a local DVC remote (files/md5/ab/cdef... -> abcdef...)."""
    return {p.parent.name + p.name for p in (remote / "files" / "md5").rglob("*") if p.is_file()}


def _restricted_hashes(ws: Path, params_paths: dict) -> set[str]:
    """md5 of every object (files and folder manifests, and the files inside folders) of restricted outputs."""
    restricted = tuple(params_paths[k] for k in ("raw", "ground_truth", "ingested"))
    hashes: set[str] = set()
    entries = []
    lock = dvcops.read_lock(ws)
    in_git = set(dvcops.tracked_state_files(ws))  # cache: false (metrics.json, headline.json), never pushed
    for stage in lock["stages"].values():
        entries += [o for o in stage.get("outs", []) if o["path"].startswith(restricted) and o["path"] not in in_git]
    import yaml

    for key in ("raw", "ground_truth"):
        entries += yaml.safe_load((ws / f"{params_paths[key]}.dvc").read_text())["outs"]
    for o in entries:
        md5 = o["md5"]
        hashes.add(md5)
        if md5.endswith(".dir"):
            manifest = ws / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]
            hashes |= {e["md5"] for e in json.loads(manifest.read_text())}
    return hashes


def _shared_hashes(ws: Path, params_paths: dict) -> set[str]:
    restricted = tuple(params_paths[k] for k in ("raw", "ground_truth", "ingested"))
    hashes: set[str] = set()
    for stage in dvcops.read_lock(ws)["stages"].values():
        for o in stage.get("outs", []):
            if not o["path"].startswith(restricted):
                hashes.add(o["md5"])
                if o["md5"].endswith(".dir"):
                    manifest = ws / ".dvc" / "cache" / "files" / "md5" / o["md5"][:2] / o["md5"][2:]
                    hashes |= {e["md5"] for e in json.loads(manifest.read_text())}
    return hashes


def _remote_texts(remote: Path):
    """Text content of every object of a remote (Parquet decoded: its pages are compressed)."""
    import pyarrow.parquet as pq

    for p in sorted(remote.rglob("*")):
        if not p.is_file():
            continue
        raw = p.read_bytes()
        if raw[:4] == b"PAR1":
            table = pq.read_table(p)
            yield p, "\n".join(str(v) for col in table.columns for v in col.to_pylist())
        else:
            yield p, raw.decode("utf-8", errors="ignore")


def _built(ws: Path) -> list[str]:
    """Stages reproduced in the workspace, in DVC order."""
    lock = dvcops.read_lock(ws).get("stages", {})
    return [s for s in dvcops.stage_order(ws) if s in lock]


def _require(ws: Path, *stages: str) -> None:
    missing = [s for s in stages if s not in _built(ws)]
    if missing:
        pytest.skip(f"stage code not available yet: {', '.join(missing)}")


def _params_paths(ws: Path) -> dict:
    from pipeline.config import load_params

    return load_params(ws / "params.yaml").paths.model_dump()


# ---------------------------------------------------------------------------------------------------------------


def test_repro_records_every_stage(dvc_built):
    built = _built(dvc_built)
    assert built == UP_TO_SPLIT[: len(built)] and len(built) >= 2
    paths = _params_paths(dvc_built)
    tracked = dvcops.git(["ls-files"], dvc_built).stdout.split()
    assert "dvc.lock" in tracked and "data/01_raw.dvc" in tracked and "data/ground_truth.dvc" in tracked
    # DVC itself sees the .dvc pointers (a .gitignore that hides data/ from DVC's walk would drop them silently)
    assert {"data/01_raw.dvc", "data/ground_truth.dvc"} <= set(dvcops.tracked_state_files(dvc_built))
    for stage, key in zip(built, ("ingested", "anonymized", "quality", "splits")):
        folder = paths[key]
        assert f"{folder}/metrics.json" in tracked, f"{stage}: metrics.json committed with dvc.lock"
        assert f"{folder}/headline.json" in tracked, f"{stage}: headline.json committed with dvc.lock"
        assert not any(t.startswith(folder) and not t.endswith(("metrics.json", "headline.json")) for t in tracked), \
            "data in git"
        if stage == "anonymize":  # its seconds live in timings.json: on disk, neither in git nor in dvc.lock
            assert (dvc_built / folder / "timings.json").is_file()
        assert load_ledger(dvc_built / folder)["balanced"], stage
    assert dvcops.git(["status", "--porcelain"], dvc_built).stdout.strip() == ""


def test_second_repro_runs_nothing(dvc_built, tmp_path):
    ws = _copy(dvc_built, tmp_path)
    until = _built(ws)[-1]
    assert dvcops.status(ws, [until]) == {}
    before = (ws / "dvc.lock").read_text()
    proc = dvcops.run_dvc(["repro", until], ws)
    assert _ran(proc) == set()
    assert (ws / "dvc.lock").read_text() == before


def test_forced_rerun_is_the_same_dataset(dvc_built, tmp_path):
    """A rerun on identical records changes only timings.json: metrics.json, dvc.lock and the dataset version stay
    (issue 24: timings apart from the hashed metrics; `fraudslm diff` says "same dataset")."""
    ws = _copy(dvc_built, tmp_path)
    _require(ws, "anonymize")
    anon = _params_paths(ws)["anonymized"]
    lock_a = dvcops.read_lock(ws)
    metrics_a = (ws / anon / "metrics.json").read_bytes()
    dvcops.run_dvc(["repro", "--force", "--single-item", "anonymize"], ws)
    assert (ws / anon / "metrics.json").read_bytes() == metrics_a
    assert (ws / anon / "timings.json").is_file()
    assert dvcops.dataset_hash(dvcops.read_lock(ws)) == dvcops.dataset_hash(lock_a)
    result = diff_versions("HEAD", "workspace", params_path=ws / "params.yaml", as_json=True)
    assert result["same_dataset"] and result["changed"] == [], result["changed"][:5]
    assert dvcops.git(["status", "--porcelain", "--", anon], ws).stdout.strip() == ""


def test_quality_param_reruns_quality_and_downstream_only(dvc_built, tmp_path):
    ws = _copy(dvc_built, tmp_path)
    _require(ws, "quality", "split")
    lock_a = dvcops.read_lock(ws)
    assert dvcops.apply_overrides(ws / "params.yaml", {"quality.k_folds": 4}) == {"quality.k_folds": 4}
    assert "k_folds: 4" in (ws / "params.yaml").read_text() and "# flag | drop | relabel" in (ws / "params.yaml").read_text()
    stale = dvcops.status(ws, _built(ws))
    assert set(stale) == {"quality"}, stale  # only the stage whose params changed is stale before the run
    proc = dvcops.run_dvc(["repro", "split"], ws)
    assert _ran(proc) == {"quality", "split"}
    lock_b = dvcops.read_lock(ws)
    for stage in ("ingest", "anonymize"):
        assert lock_b["stages"][stage] == lock_a["stages"][stage], f"{stage} must not rerun"
    assert lock_b["stages"]["quality"]["params"] != lock_a["stages"]["quality"]["params"]

    # two dataset versions, and what changed between them
    sha = dvcops.git_commit(ws, dvcops.tracked_state_files(ws), "quality.k_folds=4")
    assert sha
    tag = dvcops.dataset_tag(lock_b, day="20250101")
    assert re.fullmatch(r"data-v20250101-[0-9a-f]{8}", tag) and dvcops.git_tag(ws, tag, "v2")
    assert not dvcops.git_tag(ws, tag, "again")
    result = diff_versions("HEAD~1", tag, params_path=ws / "params.yaml", as_json=True)
    assert result["b"]["commit"] == sha
    changed_paths = {o["path"] for o in result["changed_outputs"]}
    assert any(p.startswith(_params_paths(ws)["quality"]) for p in changed_paths)
    assert not any(p.startswith((_params_paths(ws)["ingested"], _params_paths(ws)["anonymized"])) for p in changed_paths)
    assert any(r["metric"].startswith(("quality", "split")) for r in result["changed"])
    assert not any(r["metric"].startswith(("ingest", "anonymize")) for r in result["changed"])
    same = diff_versions("HEAD", "workspace", params_path=ws / "params.yaml", as_json=True)
    assert same["changed"] == [] and same["same_dataset"]


def test_diff_cli_table_and_json(dvc_built, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from pipeline.cli import app

    ws = _copy(dvc_built, tmp_path)
    monkeypatch.chdir(ws)
    res = CliRunner().invoke(app, ["diff", "HEAD", "HEAD", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["same_dataset"] is True
    res = CliRunner().invoke(app, ["diff", "HEAD", "HEAD"])
    assert res.exit_code == 0 and "0 changed" in res.stdout
    res = CliRunner().invoke(app, ["diff", "no-such-rev", "HEAD"])
    assert res.exit_code == 2 and "unknown git revision" in res.output


def test_push_pull_keeps_raw_pii_on_the_restricted_remote(dvc_built, tmp_path):
    ws = _copy(dvc_built, tmp_path)
    remotes = tmp_path / "remotes"
    paths = _params_paths(ws)
    dvcops.push(ws)
    restricted_objs, shared_objs = _objects(remotes / "restricted"), _objects(remotes / "shared")
    assert restricted_objs and shared_objs

    # no object of a restricted output on the shared remote (unless a shared output has the very same bytes)
    leaked = (_restricted_hashes(ws, paths) - _shared_hashes(ws, paths)) & shared_objs
    assert not leaked, f"{len(leaked)} restricted object(s) on the shared remote"
    # every raw source object is on the restricted remote
    assert _restricted_hashes(ws, paths) - _shared_hashes(ws, paths) <= restricted_objs

    # no planted canary value anywhere in the shared remote (Parquet decoded)
    canaries = [c["value"] for c in json.loads((ws / paths["ground_truth"] / "canaries.json").read_text())]
    assert canaries
    for path, text in _remote_texts(remotes / "shared"):
        hits = [c for c in canaries if c in text]
        assert not hits, f"canary found in shared remote object {path.name}"
    # ... while the restricted remote does hold them (the check above can see them)
    assert any(any(c in text for c in canaries) for _, text in _remote_texts(remotes / "restricted"))

    # round trip: a fresh clone pulls everything back and is up to date
    clone = tmp_path / "clone"
    dvcops.git(["clone", "--quiet", str(ws), str(clone)], tmp_path)
    shutil.copy2(ws / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    built = _built(ws)
    inputs = [f"{paths['raw']}.dvc", f"{paths['ground_truth']}.dvc"]
    dvcops.pull(clone, targets=built + inputs, allow_missing=False)
    assert dvcops.status(clone, built + inputs) == {}
    for rel in ("records.parquet", "ledger.json"):
        assert (clone / paths["anonymized"] / rel).read_bytes() == (ws / paths["anonymized"] / rel).read_bytes()

    # a consumer with shared access only can pull the anonymized stages and nothing restricted
    consumer = tmp_path / "consumer"
    dvcops.git(["clone", "--quiet", str(ws), str(consumer)], tmp_path)
    (tmp_path / "no-access").mkdir()
    dvcops.run_dvc(["remote", "modify", "--local", "restricted", "url", str(tmp_path / "no-access")], consumer)
    dvcops.run_dvc(["remote", "modify", "--local", "shared", "url", str(remotes / "shared")], consumer)
    shared_stages = [s for s in _built(ws) if s not in ("ingest",)]
    dvcops.pull(consumer, targets=shared_stages, allow_missing=False)
    assert (consumer / paths["anonymized"] / "records.parquet").exists()
    assert not (consumer / paths["ingested"] / "records.parquet").exists()
    assert not any((consumer / paths["raw"]).glob("*"))


@pytest.mark.slow
def test_full_pipeline_repro_and_noop(dvc_built, tmp_path):
    """train, compress and report on top of the split stage; then a second repro runs nothing."""
    ws = _copy(dvc_built, tmp_path)
    _require(ws, "split")
    proc = dvcops.run_dvc(["repro"], ws, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert _ran(proc) == {"train", "compress", "report"}
    assert dvcops.status(ws) == {}
    assert _ran(dvcops.run_dvc(["repro"], ws)) == set()
    lock = dvcops.read_lock(ws)
    assert set(dvcops.stage_order(ws)) <= set(lock["stages"])
    metrics = json.loads(dvcops.run_dvc(["metrics", "show", "--json"], ws).stdout)
    assert metrics
    plots = json.loads(dvcops.run_dvc(["plots", "show", "--json"], ws, check=False).stdout or "{}")
    assert plots.get("data"), plots.get("errors")
    # `dvc metrics show` prints the headline files: readable lines (issue 24)
    text = dvcops.run_dvc(["metrics", "show"], ws).stdout
    assert "pr_auc" in text and max(len(line) for line in text.splitlines()) < 200
    # the report on real model stages: its figures are the producers', its verdict follows the baseline floor
    from pipeline.contracts import CompressMetrics, TrainMetrics, read_metrics

    paths = _params_paths(ws)
    report = json.loads((ws / paths["reports"] / "report.json").read_text())
    cm = read_metrics(ws / paths["compressed"], CompressMetrics)
    tm = read_metrics(ws / paths["lora"], TrainMetrics)
    model = report["sections"]["model"]
    assert model["compression"]["chosen"] == cm.chosen and model["compression"]["floor_met"] is cm.chosen_rule.floor_met
    assert model["metrics"]["test.pr_auc"] == round(tm.test.pr_auc, 6)
    if cm.chosen_rule.floor_met is False:
        assert report["summary"]["overall"] != "pass"
