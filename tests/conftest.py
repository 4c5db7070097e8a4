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
