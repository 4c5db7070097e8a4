"""The ingest stage end to end: the generated demo (every malformed row quarantined, ledger balanced,
near-duplicate precision/recall), deduplication, determinism, the accounting gate and the CLI exit codes."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import pipeline.ingest as ingest_mod
from pipeline.cli import app
from pipeline.config import REPO_ROOT, load_params
from pipeline.errors import GateError
from pipeline.ingest import run_ingest
from pipeline.sources.schema import record_schema

DEMO_SOURCES = REPO_ROOT / "schemas" / "sources.yaml"
SHARED_SOURCES = REPO_ROOT / "schemas" / "sources.shared.yaml"


def _demo_params(raw: Path, **sets: Any):
    return load_params(REPO_ROOT / "params.yaml", {"paths.raw": str(raw), **sets})


@pytest.fixture(scope="module")
def demo_run(small_demo, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("ingest_demo")
    m = run_ingest(DEMO_SOURCES, out, _demo_params(small_demo["raw"]), ground_truth=small_demo["truth"])
    return {"out": out, "metrics": m, "truth": small_demo["truth"], "raw": small_demo["raw"]}


def _truth(truth: Path, name: str) -> list[dict[str, str]]:
    with open(truth / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------------------------------------ demo


def test_demo_every_malformed_row_is_quarantined(demo_run) -> None:
    q = pd.read_parquet(demo_run["out"] / "quarantine.parquet")
    got = set(zip(q["source"], q["locator"]))
    planted = _truth(demo_run["truth"], "malformed.csv")
    assert planted, "the demo plants malformed rows"
    missed = [(r["source"], r["locator"], r["problem"]) for r in planted if (r["source"], r["locator"]) not in got]
    assert missed == []
    ev = demo_run["metrics"]["evaluation"]["malformed"]
    assert ev["recall"] == 1.0
    assert ev["quarantined_not_planted"] == {}  # nothing good was quarantined


def test_demo_ledger_balances_and_counts_every_source_row(demo_run) -> None:
    ledger = json.loads((demo_run["out"] / "ledger.json").read_text())
    manifest = json.loads((demo_run["truth"] / "manifest.json").read_text())
    assert ledger["stage"] == "ingest" and ledger["balanced"] is True
    for name, s in ledger["sources"].items():
        assert s["read"] == s["accepted"] + s["quarantined"] + s["duplicates"]
        assert s["read"] == manifest["sources"][name]["records"]
        assert len(s["sha256"]) == 64 and s["bytes"] > 0
    rec = pd.read_parquet(demo_run["out"] / "records.parquet")
    dup = pd.read_parquet(demo_run["out"] / "duplicates.parquet")
    q = pd.read_parquet(demo_run["out"] / "quarantine.parquet")
    assert ledger["totals"]["read"] == len(rec) + len(dup) + len(q) == manifest["n_records"]


def test_demo_near_duplicates_precision_recall(demo_run) -> None:
    ev = demo_run["metrics"]["evaluation"]["duplicates"]
    assert ev["evaluable"] > 0
    assert ev["precision"] >= 0.95 and ev["recall"] >= 0.95, ev
    dup = pd.read_parquet(demo_run["out"] / "duplicates.parquet")
    rec = pd.read_parquet(demo_run["out"] / "records.parquet")
    assert set(dup["dup_of"]) <= set(rec["record_id"])  # every pointer leads to a kept record
    assert set(dup["kind"]) <= {"exact", "near"}
    assert ((dup["similarity"] >= 0.85) & (dup["similarity"] <= 1.0)).all()
    conflicted = rec[rec["label_conflict"]]
    for rid in conflicted["record_id"]:
        labels = set(dup.loc[dup["dup_of"] == rid, "label"].dropna()) | set(rec.loc[rec["record_id"] == rid, "label"].dropna())
        assert labels == {0, 1}


def test_demo_records_match_the_contract(demo_run) -> None:
    schema = record_schema()
    rec = pd.read_parquet(demo_run["out"] / "records.parquet")
    extras = {c: t for c, t in schema.EXTRA_COLUMNS.items() if c in rec.columns}
    assert schema.check_frame(rec, extras) == []
    row = rec.iloc[0]
    assert row["record_id"] == hashlib.sha256(f"{row['source']}\x1f{row['source_key']}".encode()).hexdigest()[:16]
    assert str(rec["event_time"].dtype) == "datetime64[us, UTC]"
    assert rec["event_time"].notna().all()
    assert (rec["dup_cluster"] == rec["record_id"]).all()
    assert set(rec["source"]) == {"transactions", "chats", "emails", "case_notes", "alerts"}
    tx = rec[rec["source"] == "transactions"]
    assert tx["amount"].notna().all() and tx["card_number"].notna().all()
    # the template renders structured fields (PII columns stay out; the free-text memo may carry PII)
    first = tx.iloc[0]
    assert first["text"].startswith(f"{first['tx_type']} transaction of {first['amount']:.2f} {first['currency']} at ")


def test_demo_no_pii_in_ledger_metrics_or_details(demo_run) -> None:
    canaries = [c["value"] for c in json.loads((demo_run["truth"] / "canaries.json").read_text())]
    q = pd.read_parquet(demo_run["out"] / "quarantine.parquet")
    blobs = [(demo_run["out"] / "ledger.json").read_text(), (demo_run["out"] / "metrics.json").read_text(),
             " ".join(q["detail"].dropna())]
    for value in canaries:
        assert all(value not in b for b in blobs), "a planted PII value leaked"


def test_demo_is_deterministic_and_chunk_size_independent(demo_run, tmp_path: Path) -> None:
    out = tmp_path / "again"
    run_ingest(DEMO_SOURCES, out, _demo_params(demo_run["raw"], **{"ingest.chunk_rows": 37}), ground_truth=tmp_path / "x")
    for name in ("records.parquet", "duplicates.parquet", "quarantine.parquet"):
        a = pd.read_parquet(demo_run["out"] / name)
        b = pd.read_parquet(out / name)
        pd.testing.assert_frame_equal(a, b)
    la = json.loads((demo_run["out"] / "ledger.json").read_text())
    lb = json.loads((out / "ledger.json").read_text())
    assert la["sources"] == lb["sources"]
    out2 = tmp_path / "third"
    run_ingest(DEMO_SOURCES, out2, _demo_params(demo_run["raw"], **{"ingest.chunk_rows": 37}), ground_truth=tmp_path / "x")
    for name in ("records.parquet", "duplicates.parquet", "quarantine.parquet", "ledger.json"):
        assert (out / name).read_bytes() == (out2 / name).read_bytes(), name


# ------------------------------------------------------------------------------------------------ dedup


def _write(tmp_path: Path, sources: list[dict[str, Any]]) -> Path:
    p = tmp_path / "sources.yaml"
    p.write_text(yaml.safe_dump({"version": 1, "sources": sources}, sort_keys=False))
    return p


def _run(tmp_path: Path, sources: list[dict[str, Any]], **sets: Any) -> dict[str, Any]:
    out = tmp_path / "out"
    m = run_ingest(_write(tmp_path, sources), out, load_params(None, {"paths.raw": str(tmp_path), **sets}),
                   ground_truth=tmp_path / "none")
    return {"m": m, "rec": pd.read_parquet(out / "records.parquet"), "dup": pd.read_parquet(out / "duplicates.parquet"),
            "q": pd.read_parquet(out / "quarantine.parquet")}


LONG = ("Hello, someone called me pretending to be from the bank and asked for the code that was sent to my phone. "
        "I gave it to them and now there is a payment of 950 EUR I did not make.")


def test_dedup_exact_near_cross_source_and_label_conflict(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(
        "id,text,label\n"
        f"a1,\"{LONG}\",1\n"
        "a2,Completely different message about a card that was lost on the train yesterday evening.,0\n"
        f"a3,\"  {LONG.upper()}  \",0\n"  # exact after normalisation, conflicting label
    )
    near = LONG.replace("pretending", "pretendin").replace("950", "9500")
    (tmp_path / "b.jsonl").write_text(
        json.dumps({"id": "b1", "text": near, "label": "fraud"}) + "\n"
        + json.dumps({"id": "b2", "text": "A message only in the second source, long enough to matter.", "label": "legit"}) + "\n"
    )
    (tmp_path / "c.csv").write_text(f"id,text\nc1,\"{LONG}\"\n")
    lab = {"field": "label", "mapping": {"1": 1, "0": 0, "fraud": 1, "legit": 0}}
    res = _run(tmp_path, [
        {"name": "a", "kind": "csv", "location": "${raw}/a.csv", "key": "id", "label": lab, "text": "{text}"},
        {"name": "b", "kind": "jsonl", "location": "${raw}/b.jsonl", "key": "id", "label": lab, "text": "{text}"},
        {"name": "c", "kind": "csv", "location": "${raw}/c.csv", "key": "id", "text": "{text}", "dedup": False},
    ])
    rec, dup = res["rec"], res["dup"]
    assert rec["source_key"].tolist() == ["a1", "a2", "b2", "c1"]  # c opted out: its copy stays
    d = dup.set_index("source_key")
    survivor = rec.loc[rec["source_key"] == "a1", "record_id"].item()
    assert d.loc["a3", "kind"] == "exact" and d.loc["a3", "dup_of"] == survivor and d.loc["a3", "similarity"] == 1.0
    assert d.loc["b1", "kind"] == "near" and d.loc["b1", "dup_of"] == survivor and 0.85 <= d.loc["b1", "similarity"] < 1
    assert rec.loc[rec["source_key"] == "a1", "label_conflict"].item()
    assert not rec.loc[rec["source_key"] != "a1", "label_conflict"].any()
    assert res["m"]["duplicates"] == {"exact": 1, "near": 1, "label_conflicts": 1}


def test_keyed_dedup_and_duplicate_keys_across_chunks(tmp_path: Path) -> None:
    rows = ["tx,cust,ts,amount,memo,label"]
    for i in range(6):
        rows.append(f"T{i},C{i},2024-01-0{i + 1}T10:00:00Z,{10 + i}.00,Groceries,0")
    rows.append("T9,C1,2024-01-02T10:00:00Z,11.00,Groceries again,1")  # same event as T1 (other memo)
    rows.append("T3,C7,2024-01-07T10:00:00Z,99.00,Reused id,0")  # duplicate key
    rows.append("T8,C8,not a date,5.00,Bad time,0")
    rows.append("T7,C7,2024-01-08T10:00:00Z,five,Bad amount,0")
    (tmp_path / "tx.csv").write_text("\n".join(rows) + "\n")
    res = _run(tmp_path, [{
        "name": "tx", "kind": "csv", "location": "${raw}/tx.csv", "key": "tx", "group": "cust",
        "timestamp": {"field": "ts"}, "label": {"field": "label", "mapping": {"1": 1, "0": 0}},
        "fields": {"amount": "amount"}, "text": "payment of {amount}: {memo}",
        "dedup": {"fields": ["cust", "ts", "amount"]},
    }], **{"ingest.chunk_rows": 2})
    assert res["rec"]["source_key"].tolist() == ["T0", "T1", "T2", "T3", "T4", "T5"]
    d = res["dup"].set_index("source_key")
    assert d.loc["T9", "kind"] == "near" and d.loc["T9", "dup_of"] == res["rec"]["record_id"][1]
    assert res["rec"]["label_conflict"].tolist() == [False, True, False, False, False, False]
    q = dict(zip(res["q"]["locator"], res["q"]["reason"]))
    assert q == {"line 9": "duplicate_key", "line 10": "invalid_timestamp", "line 11": "invalid_value"}
    assert res["rec"]["amount"].tolist() == [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert res["rec"]["text"][0] == "payment of 10.00: Groceries"


def test_timestamps_to_utc(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        "id,text,ts\n1,a,2024-03-01 12:00:00\n2,b,2024-03-01T12:00:00+02:00\n3,c,\n"
    )
    res = _run(tmp_path, [{"name": "t", "kind": "csv", "location": "${raw}/t.csv", "key": "id", "text": "{text}",
                           "timestamp": {"field": "ts", "timezone": "Europe/Paris"}}])
    got = [str(x) for x in res["rec"]["event_time"]]
    assert got == ["2024-03-01 11:00:00+00:00", "2024-03-01 10:00:00+00:00", "NaT"]


# ------------------------------------------------------------------------------------------------ gate / CLI


def _tiny(tmp_path: Path) -> Path:
    (tmp_path / "t.csv").write_text("id,text,label\n1,hello there,0\n2,\"broken,1\n3,general kenobi,1\n")
    return _write(tmp_path, [{"name": "t", "kind": "csv", "location": "${raw}/t.csv", "key": "id", "text": "{text}",
                              "label": {"field": "label", "mapping": {"1": 1, "0": 0}}}])


def test_gate_fails_when_rows_go_missing(tmp_path: Path, monkeypatch) -> None:
    cfg = _tiny(tmp_path)
    real = ingest_mod.convert_chunk

    def leaky(*args, **kwargs):
        df, q = real(*args, **kwargs)
        return df.iloc[1:], q  # lose a record on the way

    monkeypatch.setattr(ingest_mod, "convert_chunk", leaky)
    with pytest.raises(GateError, match="does not balance"):
        run_ingest(cfg, tmp_path / "out", load_params(None, {"paths.raw": str(tmp_path)}))
    assert json.loads((tmp_path / "out" / "ledger.json").read_text())["balanced"] is False
    res = CliRunner().invoke(app, ["ingest", "--sources", str(cfg), "--out", str(tmp_path / "out2"),
                                   "--params", str(REPO_ROOT / "params.yaml"), "--set", f"paths.raw={tmp_path}"])
    assert res.exit_code == 1
    assert res.stderr.strip().count("\n") == 0 and "does not balance" in res.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "fraudslm"
    return subprocess.run([str(exe), *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_cli_exit_codes(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path)
    ok = _cli("ingest", "--sources", str(cfg), "--out", str(tmp_path / "out"), "--set", f"paths.raw={tmp_path}")
    assert ok.returncode == 0, ok.stderr
    assert "read 3, accepted 2, quarantined 1" in ok.stderr
    ledger = json.loads((tmp_path / "out" / "ledger.json").read_text())
    assert ledger["sources"]["t"]["reasons"] == {"malformed_row": 1}

    missing = _cli("ingest", "--sources", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o2"))
    assert missing.returncode == 2 and missing.stderr.strip().count("\n") == 0 and "not found" in missing.stderr

    bad = yaml.safe_load(cfg.read_text())
    bad["sources"][0]["kind"] = "xls"
    cfg.write_text(yaml.safe_dump(bad))
    unknown = _cli("ingest", "--sources", str(cfg), "--out", str(tmp_path / "o3"), "--set", f"paths.raw={tmp_path}")
    assert unknown.returncode == 2 and "unknown kind 'xls'" in unknown.stderr
    assert "Traceback" not in unknown.stderr and unknown.stderr.strip().count("\n") == 0


def test_failed_run_keeps_previous_outputs(tmp_path: Path) -> None:
    cfg = _tiny(tmp_path)
    params = load_params(None, {"paths.raw": str(tmp_path)})
    run_ingest(cfg, tmp_path / "out", params)
    before = (tmp_path / "out" / "records.parquet").read_bytes()
    data = yaml.safe_load(cfg.read_text())
    (tmp_path / "u.csv").write_text("id,other\n1,x\n")
    data["sources"].append({"name": "u", "kind": "csv", "location": "${raw}/u.csv", "key": "id", "text": "{text}"})
    cfg.write_text(yaml.safe_dump(data))
    with pytest.raises(Exception, match="header lacks"):
        run_ingest(cfg, tmp_path / "out", params)
    assert (tmp_path / "out" / "records.parquet").read_bytes() == before
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files left


# ------------------------------------------------------------------------------------------------ shared data


def test_shared_sms_sets(shared_data: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load(SHARED_SOURCES.read_text())
    cfg["sources"] = [s for s in cfg["sources"] if s["name"] in ("sms_spam", "smishing")]
    p = tmp_path / "shared.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    m = run_ingest(p, tmp_path / "out", load_params(REPO_ROOT / "params.yaml"), ground_truth=tmp_path / "none")
    s = m["sources"]
    assert s["sms_spam"]["read"] == 3916 and s["smishing"]["read"] == 4208
    assert s["sms_spam"]["quarantined"] == 0 and s["smishing"]["quarantined"] == 0  # Spam/spam, Smishing/smishing
    assert s["smishing"]["duplicates"] > 3000  # most of the smishing set is also in the UCI set
    assert s["sms_spam"]["duplicates_by_kind"]["exact"] > 0
    assert m["balanced"]


@pytest.mark.slow
def test_shared_card_transactions(shared_data: Path, tmp_path: Path) -> None:
    cfg = yaml.safe_load(SHARED_SOURCES.read_text())
    cfg["sources"] = [s for s in cfg["sources"] if s["name"] == "card_transactions"]
    p = tmp_path / "shared.yaml"
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    m = run_ingest(p, tmp_path / "out", load_params(REPO_ROOT / "params.yaml"), ground_truth=tmp_path / "none")
    s = m["sources"]["card_transactions"]
    assert s["read"] == s["accepted"] == 268_043
    assert s["labels"]["1"] == 2375
    rec = pd.read_parquet(tmp_path / "out" / "records.parquet", columns=["text", "group_id", "event_time"])
    assert rec["text"][0].startswith("card payment of ")
    assert rec["event_time"].notna().all()
