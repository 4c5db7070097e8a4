"""The demo-data generator: determinism, contract, labels, duplicates, malformed rows, PII ground truth, canaries."""

from __future__ import annotations

import csv
import email
import json
import sqlite3
from email import policy
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.config import DemoParams
from pipeline.demo import generate
from pipeline.demo.texts import jaccard
from pipeline.demo.verify import CHAT_REQUIRED, MAIN_TEXT, TX_COLS, read_sources
from pipeline.demo.values import aba_valid, iban_valid, luhn_valid
from pipeline.errors import ConfigError

TRUTH_FILES = ("pii_spans.jsonl", "labels.csv", "duplicates.csv", "malformed.csv", "canaries.json", "manifest.json")
RAW_FILES = ("transactions.csv", "chats.jsonl", "case_notes.sqlite", "alerts.parquet")


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("demo_gen")
    m = generate(out=base / "raw", truth_out=base / "gt", n=800, seed=11, params=DemoParams())
    return {"raw": base / "raw", "truth": base / "gt", "manifest": m, "base": base}


def _truth_csv(truth: Path, name: str) -> list[dict[str, str]]:
    with open(truth / name, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _spans(truth: Path) -> list[dict]:
    return [json.loads(x) for x in (truth / "pii_spans.jsonl").read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------------------------- determinism


def test_same_seed_identical_bytes_and_other_seed_differs(demo, tmp_path):
    generate(out=tmp_path / "raw", truth_out=tmp_path / "gt", n=800, seed=11, params=DemoParams())
    a = {**_files(demo["raw"]), **{"gt/" + k: v for k, v in _files(demo["truth"]).items()}}
    b = {**_files(tmp_path / "raw"), **{"gt/" + k: v for k, v in _files(tmp_path / "gt").items()}}
    assert sorted(a) == sorted(b)
    diff = [k for k in a if a[k] != b[k]]
    assert diff == [], f"differ between runs: {diff[:5]}"
    for f in RAW_FILES:
        assert f in a
    for f in TRUTH_FILES:
        assert "gt/" + f in a
    generate(out=tmp_path / "raw2", truth_out=tmp_path / "gt2", n=800, seed=12, params=DemoParams())
    for f in RAW_FILES:
        assert (tmp_path / "raw2" / f).read_bytes() != a[f], f


def test_manifest_counts_and_ledger(demo):
    m = demo["manifest"]
    assert m["n_records"] == 800 == sum(m["counts"].values())
    assert m["seed"] == 11
    assert m["counts"]["transactions"] == 480 and m["counts"]["chats"] == 160
    assert len(list((demo["raw"] / "emails").glob("*.eml"))) == m["counts"]["emails"]
    on_disk = json.loads((demo["truth"] / "manifest.json").read_text())
    assert on_disk["counts"] == m["counts"]
    ledger = json.loads((demo["raw"] / "ledger.json").read_text())
    assert ledger["balanced"] and ledger["stage"] == "demo-data"
    assert {s: v["read"] for s, v in ledger["sources"].items()} == m["counts"]
    assert (demo["raw"] / "metrics.json").exists()
    # no ground truth inside the raw folder
    assert not any((demo["raw"] / f).exists() for f in TRUTH_FILES)


# --------------------------------------------------------------------------------------------- labels


def test_prevalence_per_source_in_band(tmp_path):
    m = generate(out=tmp_path / "raw", truth_out=tmp_path / "gt", n=3000, seed=5, params=DemoParams())
    rows = _truth_csv(tmp_path / "gt", "labels.csv")
    for src, count in m["counts"].items():
        labels = [int(r["true_label"]) for r in rows if r["source"] == src]
        prev = sum(labels) / len(labels)
        assert 0.01 <= prev <= 0.05, (src, prev)
        assert abs(prev - m["prevalence"][src]) < 1e-6
    assert len({round(v, 3) for v in m["prevalence"].values()}) > 1  # differs per source


def test_class_conditional_flip_rates(tmp_path):
    """demo.flip_rate_fraud_to_legit (missed fraud) and demo.flip_rate_legit_to_fraud (false alarms) apply per true
    class; the old uniform demo.flip_rate is refused with a message naming the new keys."""
    from pipeline.config import load_params
    from pipeline.errors import ConfigError

    p = DemoParams(flip_rate_fraud_to_legit=0.25, flip_rate_legit_to_fraud=0.02)
    m = generate(out=tmp_path / "raw", truth_out=tmp_path / "gt", n=3000, seed=5, params=p)
    rows = _truth_csv(tmp_path / "gt", "labels.csv")
    fraud = [r for r in rows if r["true_label"] == "1"]
    legit = [r for r in rows if r["true_label"] == "0"]
    f2l = sum(r["given_label"] == "0" for r in fraud) / len(fraud)
    l2f = sum(r["given_label"] == "1" for r in legit) / len(legit)
    assert 0.12 <= f2l <= 0.38 and 0.01 <= l2f <= 0.03, (f2l, l2f)
    assert m["flip"]["rate_param_fraud_to_legit"] == 0.25 and m["flip"]["fraud_to_legit"] == sum(
        r["given_label"] == "0" for r in fraud)
    with pytest.raises(ConfigError, match="flip_rate_fraud_to_legit"):
        load_params(None, {"demo.flip_rate": 0.05})


def test_flip_rate_and_labels_match_sources(demo):
    rows = _truth_csv(demo["truth"], "labels.csv")
    flipped = [r for r in rows if r["flipped"] == "1"]
    for r in rows:
        assert (r["true_label"] != r["given_label"]) == (r["flipped"] == "1")
    legit = [r for r in rows if r["true_label"] == "0"]
    assert sum(r["flipped"] == "1" for r in legit) / len(legit) < 0.02  # default false-alarm rate 0.005
    m = demo["manifest"]["flip"]
    assert m["flipped"] == len(flipped) == m["legit_to_fraud"] + m["fraud_to_legit"]
    # the given label is what the source carries
    recs = read_sources(demo["raw"])
    encode = {
        "transactions": lambda r: r["is_fraud"] == "1",
        "chats": lambda r: r["label"] == "fraud",
        "emails": lambda r: r["X-Case-Outcome"] == "confirmed_fraud",
        "case_notes": lambda r: r["outcome"] == "fraud",
        "alerts": lambda r: r["confirmed"],
    }
    for r in rows:
        rec = recs[(r["source"], r["key"])]
        assert encode[r["source"]](rec) == (r["given_label"] == "1"), (r["source"], r["key"])


# --------------------------------------------------------------------------------------------- PII ground truth


def test_every_span_matches_its_text(demo):
    recs = read_sources(demo["raw"])
    spans = _spans(demo["truth"])
    assert len(spans) > 1000
    types = set()
    for s in spans:
        rec = recs[(s["source"], s["key"])]
        text = rec[s["field"]]
        types.add(s["type"])
        if s["start"] == -1:
            assert s["field"] == "body_html" and s["value"] in text, s
        else:
            assert text[s["start"] : s["end"]] == s["value"], s
    expected = {"PERSON", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "ABA_ROUTING", "US_BANK_NUMBER", "EMAIL_ADDRESS",
                "PHONE_NUMBER", "IP_ADDRESS", "STREET_ADDRESS", "DATE_OF_BIRTH", "SWIFT_CODE", "CARD_EXPIRY", "CVV"}
    assert types == expected


def test_identifiers_carry_valid_checksums(demo):
    for s in _spans(demo["truth"]):
        v = s["value"]
        if s["type"] == "CREDIT_CARD":
            assert luhn_valid(v), v[-4:]
        elif s["type"] == "IBAN_CODE":
            assert iban_valid(v)
        elif s["type"] == "ABA_ROUTING":
            assert aba_valid(v)


def test_customers_recur_across_sources(demo):
    rows = _truth_csv(demo["truth"], "labels.csv")
    recs = read_sources(demo["raw"])
    by_source: dict[str, set] = {}
    for (src, key), rec in recs.items():
        cid = rec.get("customer_id")
        if cid:
            by_source.setdefault(src, set()).add(cid)
    assert len(by_source["transactions"] & by_source["chats"]) > 10
    assert rows  # labels exist


def test_canaries_planted_in_every_kind_of_source(demo):
    canaries = json.loads((demo["truth"] / "canaries.json").read_text())
    assert len(canaries) >= 10
    raw = demo["raw"]
    recs = read_sources(raw)
    blobs = {
        "transactions": (raw / "transactions.csv").read_text(encoding="utf-8", errors="replace"),
        "texts": "\n".join(r.get("text") or r.get("note") or r.get("reason") or "" for r in recs.values()),
        "emails": "\n".join(r.get("body", "") + r.get("From", "") for (s, _), r in recs.items() if s == "emails"),
        "case_notes": "\n".join(r["note"] or "" for (s, _), r in recs.items() if s == "case_notes"),
    }
    everything = "\n".join(blobs.values())
    spans = _spans(demo["truth"])
    for c in canaries:
        assert c["value"] in everything, c["type"]
        assert sum(s["value"] == c["value"] for s in spans) >= 2, c["type"]
    assert "Zebulon Quartermaine-Vasquez" in blobs["transactions"]
    assert "Zebulon Quartermaine-Vasquez" in blobs["emails"]
    assert "Zebulon Quartermaine-Vasquez" in blobs["case_notes"]
    assert sum(r.get("customer_id") == "C000000" for r in recs.values()) >= 5


# --------------------------------------------------------------------------------------------- duplicates, malformed


def _main_text(src: str, rec: dict) -> str:
    return rec.get(MAIN_TEXT[src]) or rec.get("body_html") or ""


def test_duplicates_are_exact_or_near(demo):
    recs = read_sources(demo["raw"])
    dups = _truth_csv(demo["truth"], "duplicates.csv")
    assert len(dups) >= 10
    kinds = {d["kind"] for d in dups}
    assert kinds <= {"exact", "near"} and "near" in kinds
    truth = {(r["source"], r["key"]): r for r in _truth_csv(demo["truth"], "labels.csv")}
    for d in dups:
        a = _main_text(d["source"], recs[(d["source"], d["key"])]).strip()
        b = _main_text(d["dup_of_source"], recs[(d["dup_of_source"], d["dup_of_key"])]).strip()
        if d["kind"] == "exact":
            assert a == b, d
        else:
            assert a != b and jaccard(a, b) >= 0.85, d
        assert truth[(d["source"], d["key"])]["true_label"] == truth[(d["dup_of_source"], d["dup_of_key"])]["true_label"]


def test_malformed_rows_fail_standard_parsers(demo):
    raw = demo["raw"]
    mal = _truth_csv(demo["truth"], "malformed.csv")
    by_source: dict[str, list[dict]] = {}
    for r in mal:
        by_source.setdefault(r["source"], []).append(r)
    assert set(by_source) == {"transactions", "chats", "emails", "case_notes", "alerts"}
    assert all(len(v) >= 3 for v in by_source.values())

    lines = (raw / "transactions.csv").read_bytes().split(b"\n")
    for r in by_source["transactions"]:
        n = int(r["locator"].removeprefix("line "))
        line = lines[n - 1]
        assert line.startswith(r["key"].encode())
        try:
            fields = next(csv.reader([line.decode("utf-8")], strict=True))
            bad = len(fields) != TX_COLS
        except (UnicodeDecodeError, csv.Error):
            bad = True
        assert bad, r

    jl = (raw / "chats.jsonl").read_text(encoding="utf-8").split("\n")
    for r in by_source["chats"]:
        line = jl[int(r["locator"].removeprefix("line ")) - 1]
        try:
            rec = json.loads(line)
            bad = not all(k in rec for k in CHAT_REQUIRED)
        except json.JSONDecodeError:
            bad = True
        assert bad, r

    for r in by_source["emails"]:
        msg = email.message_from_bytes((raw / "emails" / r["locator"]).read_bytes(), policy=policy.default)
        payload = msg.get_payload(decode=True)
        if r["problem"] == "no_body":
            assert not payload
        else:
            with pytest.raises(UnicodeDecodeError):
                payload.decode(msg.get_content_charset(), errors="strict")

    con = sqlite3.connect(raw / "case_notes.sqlite")
    for r in by_source["case_notes"]:
        note, outcome = con.execute("SELECT note, outcome FROM case_notes WHERE note_id = ?", (r["locator"],)).fetchone()
        assert note is None or outcome not in ("fraud", "not_fraud")
    con.close()

    table = pq.read_table(raw / "alerts.parquet").to_pylist()
    for r in by_source["alerts"]:
        row = table[int(r["locator"].removeprefix("row "))]
        assert row["alert_id"] == r["key"] and row["reason"] is None

    # everything else parses: labeled + malformed = records
    recs = read_sources(raw)
    labeled = {(r["source"], r["key"]) for r in _truth_csv(demo["truth"], "labels.csv")}
    assert len(labeled) + len(mal) == demo["manifest"]["n_records"]
    assert labeled <= set(recs)


# --------------------------------------------------------------------------------------------- CLI and errors


def test_cli_demo_data(tmp_path, repo_root, monkeypatch):
    from pipeline.cli import app

    monkeypatch.chdir(repo_root)
    res = CliRunner().invoke(app, ["demo-data", "--out", str(tmp_path / "raw"), "--n", "120", "--seed", "3"])
    assert res.exit_code == 0, res.output
    m = json.loads((tmp_path / "ground_truth" / "manifest.json").read_text())
    assert m["n_records"] == 120 and m["seed"] == 3
    res = CliRunner().invoke(app, ["demo-data", "--out", str(tmp_path / "raw"), "--n", "5"])
    assert res.exit_code == 2


def test_email_variety(demo):
    blobs = [p.read_bytes() for p in sorted((demo["raw"] / "emails").glob("*.eml"))]
    for needle in (b"multipart/alternative", b'Content-Type: text/html; charset="', b"quoted-printable", b"base64",
                   b'charset="iso-8859-1"', b'charset="cp1252"', b"Content-Transfer-Encoding: 8bit"):
        assert any(needle in b for b in blobs), needle
    html_only = [b for b in blobs if b"text/html" in b and b"text/plain" not in b and b"multipart" not in b]
    assert html_only
    for b in blobs:
        msg = email.message_from_bytes(b, policy=policy.default)
        assert msg["From"].addresses[0].display_name and msg["X-Customer-ID"].startswith("C")
        assert msg["X-Case-Outcome"] in ("confirmed_fraud", "benign")


def test_near_duplicates_found_by_minhash(demo):
    from datasketch import MinHash, MinHashLSH

    from pipeline.demo.texts import shingles

    recs = read_sources(demo["raw"])
    pairs = [d for d in _truth_csv(demo["truth"], "duplicates.csv") if d["kind"] == "near"]
    assert pairs
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    sig = {}
    for (src, key), rec in recs.items():
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([x.encode() for x in shingles(_main_text(src, rec))])
        sig[(src, key)] = m
        lsh.insert(f"{src}/{key}", m)
    found = sum(f"{d['dup_of_source']}/{d['dup_of_key']}" in lsh.query(sig[(d["source"], d["key"])]) for d in pairs)
    assert found / len(pairs) >= 0.9


def test_canary_identifiers_are_valid():
    import phonenumbers

    from pipeline.demo.values import CANARY

    assert luhn_valid(CANARY.card_number) and iban_valid(CANARY.iban) and aba_valid(CANARY.routing)
    assert phonenumbers.is_valid_number(phonenumbers.parse(CANARY.phone))


def test_tiny_n(tmp_path):
    m = generate(out=tmp_path / "raw", truth_out=tmp_path / "gt", n=10, seed=0, params=DemoParams())
    assert m["n_records"] == 10


def test_refuses_foreign_truth_folder(tmp_path):
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "precious.txt").write_text("keep me")
    with pytest.raises(ConfigError):
        generate(out=tmp_path / "raw", truth_out=tmp_path / "gt", n=50, seed=1, params=DemoParams())
    assert (tmp_path / "gt" / "precious.txt").exists()
