"""split stage: grouped (customer + near-duplicate cluster) leakage-free splits, prevalence, rebalancing,
determinism, DatasetDict hand-off, gate refusal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import load_params
from pipeline.errors import GateError
from pipeline.io import read_json, write_json, write_parquet
from synthetic_quality import anonymized_like
from pipeline.split import run_split

GATE = {"passed": True, "key_fingerprint": "abc123", "residual": {}, "checked_records": 1}


def _quality_dir(folder: Path, df: pd.DataFrame, gate: dict | None = GATE) -> Path:
    """What the quality stage hands to split: records.parquet (+ quality_flag) and provenance.json with the gate
    passport (pipeline.provenance)."""
    folder.mkdir(parents=True, exist_ok=True)
    df = df.copy()
    if "quality_flag" not in df.columns:
        df["quality_flag"] = False
    write_parquet(folder / "records.parquet", df)
    write_json(folder / "metrics.json", {"stage": "quality", **({"upstream_gate": gate} if gate is not None else {})})
    if gate is not None:
        write_json(folder / "provenance.json", {"stage": "quality", "gate": gate})
    return folder


def _params(**over):
    return load_params(None, over)


@pytest.fixture(scope="module")
def records():
    df, _ = anonymized_like(3000, seed=11, prevalence=0.06, n_customers=900, dup_rate=0.05, unlabelled_rate=0.02)
    df["quality_flag"] = np.random.default_rng(0).random(len(df)) < 0.03
    return df


@pytest.fixture(scope="module")
def split_run(records, tmp_path_factory):
    base = tmp_path_factory.mktemp("split")
    inp = _quality_dir(base / "q", records)
    m = run_split(inp, base / "s", _params(**{"split.rebalance": "undersample", "split.target_ratio": 0.25}))
    return {"base": base, "inp": inp, "out": base / "s", "metrics": m}


def _frames(out: Path) -> dict[str, pd.DataFrame]:
    return {n: pd.read_parquet(out / f"{n}.parquet") for n in ("train", "validation", "test")}


def test_zero_group_overlap(split_run, records):
    f = _frames(split_run["out"])
    m = split_run["metrics"]
    assert m["group_overlap_total"] == 0
    full = records.set_index("record_id")
    owners: dict[str, str] = {}
    for name, frame in f.items():
        for g in frame["group_id"].dropna().unique():
            assert owners.setdefault(("g", g), name) == name
        for c in full.loc[frame["record_id"], "dup_cluster"].unique():
            assert owners.setdefault(("c", c), name) == name


def test_dup_cluster_joins_customers(tmp_path):
    """Two customers linked only through a near-duplicate cluster must land in the same split (union-find)."""
    df, _ = anonymized_like(400, seed=2, prevalence=0.2, n_customers=400)
    df["group_id"] = [f"cust{i}" for i in range(len(df))]  # every record its own customer
    chain = df["record_id"].iloc[:6].tolist()
    # r0-r1 share a cluster, r1-r2 share a customer, r2-r3 share a cluster...: one component of 6
    df.loc[1, "dup_cluster"] = chain[0]
    df.loc[2, "group_id"] = df.loc[1, "group_id"]
    df.loc[3, "dup_cluster"] = chain[2]
    df.loc[4, "group_id"] = df.loc[3, "group_id"]
    df.loc[5, "dup_cluster"] = chain[4]
    df.loc[7, "group_id"] = None  # a record without a customer is its own group
    run_split(_quality_dir(tmp_path / "q", df), tmp_path / "s", _params(**{"split.rebalance": "none"}))
    where = {}
    for name, frame in _frames(tmp_path / "s").items():
        for rid in frame["record_id"]:
            where[rid] = name
    assert len({where[r] for r in chain}) == 1
    assert df.loc[7, "record_id"] in where


def test_prevalence_preserved(split_run):
    m = split_run["metrics"]
    overall = m["prevalence"]["overall"]
    for name in ("validation", "test"):
        assert abs(m["prevalence"][name] - overall) / overall <= 0.10, (name, m["prevalence"])


def test_undersample_ratio_and_ledger(split_run):
    m = split_run["metrics"]
    f = _frames(split_run["out"])
    y = f["train"]["label"]
    assert (y == 1).sum() / (y == 0).sum() == pytest.approx(0.25, rel=0.02)
    assert m["train_ratio"] == pytest.approx(0.25, rel=0.02)
    led = read_json(split_run["out"] / "ledger.json")
    assert led["balanced"]
    reasons = {r for s in led["sources"].values() for r in s["reasons"]}
    assert "undersampled" in reasons and "unlabelled" in reasons
    assert led["totals"]["accepted"] == sum(len(x) for x in f.values())
    # validation / test untouched: natural prevalence
    assert m["prevalence"]["test"] < 0.15


def test_flagged_records_leave_train_only(split_run, records, tmp_path):
    f = _frames(split_run["out"])
    m = split_run["metrics"]
    assert not f["train"]["quality_flag"].any()  # default split.train_flagged: drop
    assert f["validation"]["quality_flag"].any() and f["test"]["quality_flag"].any()  # evaluation keeps them
    led = read_json(split_run["out"] / "ledger.json")
    dropped = sum(s["reasons"].get("quality_flagged_train", 0) for s in led["sources"].values())
    assert dropped == m["rebalance"]["train_flagged"]["dropped"] > 0
    kept = run_split(split_run["inp"], tmp_path / "keep", _params(**{"split.train_flagged": "keep"}))
    assert kept["rebalance"]["train_flagged"] == {"policy": "keep", "dropped": 0}
    assert pd.read_parquet(tmp_path / "keep" / "train.parquet")["quality_flag"].any()
    assert read_json(tmp_path / "keep" / "ledger.json")["balanced"]


@pytest.mark.parametrize("method", ["oversample", "class_weight"])
def test_other_rebalancing(records, tmp_path, method):
    m = run_split(_quality_dir(tmp_path / "q", records), tmp_path / "s",
                  _params(**{"split.rebalance": method, "split.target_ratio": 0.5}))
    f = _frames(tmp_path / "s")
    tr = f["train"]
    if method == "oversample":
        assert (tr["label"] == 1).sum() / (tr["label"] == 0).sum() == pytest.approx(0.5, rel=0.02)
        assert tr["record_id"].duplicated().any()
        assert m["unique_records"]["train"] < m["sizes"]["train"]
    else:
        w = tr["weight"]
        ratio = w[tr["label"] == 1].sum() / w[tr["label"] == 0].sum()
        assert ratio == pytest.approx(0.5, rel=1e-6)
        assert (f["test"]["weight"] == 1.0).all()
        assert m["rebalance"]["weights"]["legit"] == 1.0 and m["rebalance"]["weights"]["fraud"] > 1
    for name in ("validation", "test"):
        assert abs(m["prevalence"][name] - m["prevalence"]["overall"]) / m["prevalence"]["overall"] <= 0.10


def test_deterministic(split_run, records, tmp_path):
    run_split(_quality_dir(tmp_path / "q", records), tmp_path / "s",
              _params(**{"split.rebalance": "undersample", "split.target_ratio": 0.25}))
    for name in ("train", "validation", "test"):
        a = (split_run["out"] / f"{name}.parquet").read_bytes()
        b = (tmp_path / "s" / f"{name}.parquet").read_bytes()
        assert a == b, name


def test_dataset_dict_and_card(split_run):
    from datasets import ClassLabel, load_from_disk

    dd = load_from_disk(str(split_run["out"] / "dataset"))
    assert set(dd) == {"train", "validation", "test"}
    feats = dd["train"].features
    assert isinstance(feats["label"], ClassLabel) and feats["label"].names == ["legit", "fraud"]
    assert {"text", "label", "record_id", "group_id", "source", "quality_flag"} <= set(feats)
    assert len(dd["test"]) == split_run["metrics"]["sizes"]["test"]
    assert sum(dd["train"]["quality_flag"]) + sum(dd["test"]["quality_flag"]) > 0
    card = (split_run["out"] / "README.md").read_text()
    m = split_run["metrics"]
    assert m["data_version"] in card and m["input_sha256"] in card and "abc123" in card
    assert m["upstream_gate"]["passed"] is True
    assert (split_run["out"] / "plots" / "split_balance.png").stat().st_size > 0


def test_time_based(tmp_path):
    df, _ = anonymized_like(1500, seed=4, prevalence=0.1)
    df["group_id"] = [f"cust{i}" for i in range(len(df))]  # one record per customer: clean time boundaries
    m = run_split(_quality_dir(tmp_path / "q", df), tmp_path / "s",
                  _params(**{"split.time_based": True, "split.rebalance": "none"}))
    full = df.set_index("record_id")["event_time"]
    f = _frames(tmp_path / "s")
    t = {n: full.loc[fr["record_id"]] for n, fr in f.items()}
    assert t["train"].max() <= t["validation"].min() <= t["validation"].max() <= t["test"].min()
    assert m["group_overlap_total"] == 0 and "time_range" in m


def test_refuses_without_passing_gate(records, tmp_path):
    inp = _quality_dir(tmp_path / "q", records, gate=None)
    with pytest.raises(GateError, match="gate"):
        run_split(inp, tmp_path / "s", _params())
    inp = _quality_dir(tmp_path / "q2", records, gate={"passed": False})
    res = CliRunner().invoke(app, ["split", "--in", str(inp), "--out", str(tmp_path / "s2"),
                                   "--params", str(Path(__file__).parent.parent / "params.yaml")])
    assert res.exit_code == 1 and "gate" in res.output
    assert not (tmp_path / "s2" / "train.parquet").exists()


def test_too_few_minority_is_gate_error(tmp_path):
    df, _ = anonymized_like(200, seed=9, prevalence=0.02, n_customers=200)
    with pytest.raises(GateError, match="min_minority_per_split"):
        run_split(_quality_dir(tmp_path / "q", df), tmp_path / "s", _params(**{"split.min_minority_per_split": 5}))


def test_end_to_end_on_demo(small_demo, tmp_path):
    """demo -> ingest -> anonymize -> quality -> split, with the real stages and the demo ground truth."""
    from datasets import load_from_disk

    from pipeline.anonymize import run_anonymize
    from pipeline.ingest import run_ingest
    from pipeline.quality import run_quality

    repo = Path(__file__).resolve().parent.parent
    p = load_params(repo / "params.yaml", {"paths.raw": str(small_demo["raw"]),
                                           "paths.ground_truth": str(small_demo["truth"]),
                                           "split.min_minority_per_split": 1})
    run_ingest(repo / "schemas" / "sources.yaml", tmp_path / "02", p, ground_truth=small_demo["truth"], repo_root=repo)
    run_anonymize(tmp_path / "02", tmp_path / "03", p, ground_truth=small_demo["truth"])
    q = run_quality(tmp_path / "03", tmp_path / "04", p)
    assert q["upstream_gate"]["passed"] is True and q["ground_truth"]["matched"] > 0
    assert q["ground_truth"]["recall"] is not None
    s = run_split(tmp_path / "04", tmp_path / "05", p)
    assert s["group_overlap_total"] == 0
    assert s["upstream_gate"]["key_fingerprint"] == q["upstream_gate"]["key_fingerprint"]
    dd = load_from_disk(str(tmp_path / "05" / "dataset"))
    assert dd["train"].features["label"].names == ["legit", "fraud"]
    # the per-segment evaluation columns (split.segment_columns) travel in the parquet files, never to the model
    t = pd.read_parquet(tmp_path / "05" / "test.parquet")
    assert {"channel", "amount", "iban_country", "phone_country"} <= set(t.columns)
    assert t["amount"].notna().any() and t["channel"].notna().any()
    assert not {"channel", "amount", "iban_country"} & set(dd["test"].column_names)
    # no raw value from the demo's PII ground truth appears in any quality or split output table
    import json

    values = {json.loads(line)["value"] for line in (small_demo["truth"] / "pii_spans.jsonl").read_text().splitlines()
              if line.strip()}
    values = {v for v in values if isinstance(v, str) and len(v) >= 6}
    for f in list((tmp_path / "04").glob("*.parquet")) + list((tmp_path / "05").glob("*.parquet")):
        blob = pd.read_parquet(f).astype(str).to_csv(index=False)
        leaked = [v for v in values if v in blob]
        assert not leaked, (f.name, len(leaked))


@pytest.mark.parametrize("threshold, applied", [(0.05, "none"), (0.5, "undersample")])
def test_auto_rebalance(records, tmp_path, threshold, applied):
    """auto keeps every train row when the natural ratio (~0.06 here) is at or above the threshold, and
    undersamples to target_ratio below it; the resolved method is recorded in metrics and the dataset card."""
    m = run_split(_quality_dir(tmp_path / "q", records), tmp_path / "s",
                  _params(**{"split.rebalance": "auto", "split.auto_undersample_below": threshold,
                             "split.target_ratio": 0.25}))
    rb = m["rebalance"]
    assert rb["configured"] == "auto" and rb["method"] == applied
    tr = _frames(tmp_path / "s")["train"]
    ratio = (tr["label"] == 1).sum() / (tr["label"] == 0).sum()
    if applied == "none":
        assert rb["ratio_after"] == rb["ratio_before"] == pytest.approx(ratio) and ratio < 0.25
    else:
        assert ratio == pytest.approx(0.25, rel=0.02)
    assert f"method: `{applied}`" in (tmp_path / "s" / "README.md").read_text()
