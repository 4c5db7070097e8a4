"""Shared fixtures. Everything is offline; the pseudonym key is a test key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

TEST_KEY = "test-pseudonym-key-0123456789abcdef"
os.environ["FRAUDSLM_PSEUDONYM_KEY"] = TEST_KEY

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (third-party evaluation data); tests that need it skip only when it is absent."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_demo(tmp_path_factory) -> dict[str, Path]:
    """A small generated demo (raw sources + ground truth), shared by the whole session. Read-only: copy before
    modifying."""
    from pipeline.config import DemoParams
    from pipeline.demo import generate

    base = tmp_path_factory.mktemp("demo")
    raw, truth = base / "01_raw", base / "ground_truth"
    generate(out=raw, truth_out=truth, n=600, seed=7, params=DemoParams())
    return {"base": base, "raw": raw, "truth": truth}


# --- DVC / Prefect workspaces (tests/test_dvc.py, tests/test_prefect.py) ---------------------------------------
# A tiny pipeline config: the whole chain in a couple of minutes on 2 cores.
TINY_PARAMS = {
    "demo.n": 300,
    "quality.k_folds": 3,
    "split.min_minority_per_split": 1,
    "split.train_flagged": "keep",  # 300 records: dropping flagged rows would leave train with ~1 fraud example
    "anonymize.workers": 1,
    "train.epochs": 1,
    "train.max_length": 16,
    "train.batch_size": 16,
    "train.max_train_samples": 64,
    "compress.distill_epochs": 1,
    "compress.latency_runs": 3,
}


@pytest.fixture(scope="session")
def dvc_template(tmp_path_factory) -> Path:
    """A git + DVC workspace (tiny params, demo sources + ground truth generated and `dvc add`ed, committed), not
    reproduced yet. Read-only: use pipeline.dvcops.copy_workspace."""
    import subprocess
    import sys

    from pipeline import dvcops

    base = tmp_path_factory.mktemp("dvc-template")
    ws = dvcops.make_workspace(base / "repo", overrides=TINY_PARAMS, remotes=base / "remotes")
    subprocess.run([str(Path(sys.executable).parent / "fraudslm"), "demo-data", "--out", "data/01_raw"],
                   cwd=ws, check=True, capture_output=True)
    dvcops.add(["data/01_raw", "data/ground_truth"], ws)
    dvcops.git_commit(ws, ["data/01_raw.dvc", "data/ground_truth.dvc", ".gitignore"], "demo sources")
    return ws


@pytest.fixture(scope="session")
def dvc_built(dvc_template, tmp_path_factory) -> Path:
    """dvc_template reproduced up to `split` (or the last stage whose code exists yet) and committed (dvc.lock +
    metrics). Read-only: copy it."""
    from pipeline import dvcops

    ws = dvcops.copy_workspace(dvc_template, tmp_path_factory.mktemp("dvc-built") / "repo")
    until = next(st for st, mod in (("split", "pipeline.split"), ("quality", "pipeline.quality"), ("anonymize", None))
                 if mod is None or _has_stage_code(mod))
    proc = dvcops.run_dvc(["repro", until], ws, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    dvcops.git_commit(ws, dvcops.tracked_state_files(ws), f"run up to {until}")
    return ws


def _has_stage_code(module: str) -> bool:
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return False
    # packages export their stage functions lazily (pipeline/lazy.py): `__all__` names them before first use
    return any(name.startswith("run_") for name in [*dir(mod), *getattr(mod, "__all__", ())])
