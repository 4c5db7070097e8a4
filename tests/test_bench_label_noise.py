"""benchmarks/bench_label_noise.py: the noise models (fast) and its --quick path through the real CLI (slow)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bench():
    spec = importlib.util.spec_from_file_location("bench_label_noise", ROOT / "benchmarks" / "bench_label_noise.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_noise_models_flip_the_promised_records():
    b = _bench()
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.15).astype(int)
    for model in ("uniform", "class_conditional"):
        m = b.flip_mask(y, 0.05, model, seed=1)
        assert m.sum() == 200
        np.testing.assert_array_equal(m, b.flip_mask(y, 0.05, model, seed=1))  # seeded
    uni = b.flip_mask(y, 0.05, "uniform", seed=1)
    cc = b.flip_mask(y, 0.05, "class_conditional", seed=1)
    # minority records flip ~5x as often as majority ones under class-conditional noise, ~1x under uniform
    ratio = lambda m: m[y == 1].mean() / m[y == 0].mean()  # noqa: E731
    assert 3.5 < ratio(cc) < 7 and 0.5 < ratio(uni) < 2
    # feature-dependent: records an independent model finds hard flip far more often
    p_other = np.where(rng.random(4000) < 0.1, 0.9, 0.02)
    fd = b.flip_mask(y, 0.05, "feature_dependent", seed=1, p_other=p_other)
    assert fd.sum() == 200 and fd[p_other > 0.5].mean() > 5 * fd[p_other < 0.5].mean()
    assert b.prf(uni, uni)["f1"] == 1.0 and b.prf(~uni, uni)["f1"] == 0.0


@pytest.mark.slow
def test_quick_run_through_the_cli(tmp_path):
    """The smoke path: ingest + anonymize + quality (subprocesses) on 400 SMS messages, 3 noise models."""
    b = _bench()
    out = tmp_path / "ln.json"
    args = ["--quick", "--datasets", "sms", "--only", "noise", "--work", str(tmp_path), "--out", str(out)]
    assert b.main(args) == 0
    res = json.loads(out.read_text())
    assert len(res["runs"]) == 3 and res["selection_rule"]
    for r in res["runs"]:
        assert r["stage"]["true"] == round(0.05 * r["n"]) and 0 <= r["stage"]["f1"] <= 1 and 0 <= r["standard"]["f1"] <= 1
        assert r["shortcut"]["status"] in ("ok", "info", "warning")
    assert res["summary"]["acceptance_at_5pct"]
