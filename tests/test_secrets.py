"""Secrets, offline operation and injection.

* The demo runs through every stage that exists (demo-data, ingest, anonymize, quality, split, report) as `fraudslm`
  subprocesses inside a network namespace with no interfaces (`unshare -n`), with distinctive pseudonym,
  encryption and report-signing keys. Every file written (outputs, temp folder, captured stdout/stderr) is searched
  for each key in raw, hex and base64 form: none is found. The report records the pseudonym key's fingerprint and
  is signed by the configured key.
* Key rotation: two pseudonym keys give disjoint pseudonym tokens for the same records, and different fingerprints.
* An in-process socket guard: detector build, ingest and anonymize open no network connection.
* Spreadsheet (CSV) exports neutralize formulas. HTML injection is covered by
  tests/test_report.py::test_hostile_text_renders_inert, the broken-detector gate by
  tests/test_gate.py::test_broken_detector_is_caught_by_the_gate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import _has_stage_code

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
FRAUDSLM = BIN / "fraudslm"
PSEUDO_KEY = "PSK-7f3c9e1aQZ-fraudslm-secret-test-key-0001"
PSEUDO_KEY_2 = "PSK-rotated-k4Lm9Xw2-fraudslm-secret-test-key-0002"
ENC_KEY = "ENC-b81d4fW6yP-fraudslm-secret-test-key-0003"
SIGN_SEED = hashlib.sha256(b"fraudslm signing seed for the secrets test").digest()  # 32 raw bytes
SIGN_KEY = base64.b64encode(SIGN_SEED).decode()
TOKEN = re.compile(r"<[A-Z]+(?:_[A-Z]+)*_[0-9a-f]{12}>")


def _forms(secret: bytes) -> dict[str, bytes]:
    """The byte strings a leaked secret could appear as."""
    forms = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode(),
             "base64": base64.b64encode(secret).rstrip(b"="), "base64url": base64.urlsafe_b64encode(secret).rstrip(b"="),
             "utf16": secret.decode("latin-1").encode("utf-16-le")}
    return {k: v for k, v in forms.items() if len(v) >= 12}


SECRETS = {
    "pseudonym key": _forms(PSEUDO_KEY.encode()),
    "encryption key": _forms(ENC_KEY.encode()),
    "signing key (env value)": _forms(SIGN_KEY.encode()),
    "signing key (raw seed)": _forms(SIGN_SEED),
}


def _unshare_ok() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


UNSHARE = _unshare_ok()
OPTIONAL = ("quality", "split")  # run when their stage code exists; required: demo-data, ingest, anonymize, report


def _stages() -> list[str]:
    out = []
    for st in ("quality", "split"):
        if not _has_stage_code(f"pipeline.{st}"):
            break
        out.append(st)
    return out


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> dict:
    """The demo through every existing stage, offline when `unshare -n` works, with the three secret keys set."""
    ws = tmp_path_factory.mktemp("secrets")
    data, logs, tmp = ws / "data", ws / "logs", ws / "tmp"
    logs.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAUDSLM_")}
    env.update({"FRAUDSLM_PSEUDONYM_KEY": PSEUDO_KEY, "FRAUDSLM_ENCRYPTION_KEY": ENC_KEY,
                "FRAUDSLM_REPORT_SIGNING_KEY": SIGN_KEY, "TMPDIR": str(tmp), "HOME": str(ws / "home"),
                "PATH": f"{BIN}:{env.get('PATH', '')}"})
    sets = []
    for k, v in {"paths.raw": data / "01_raw", "paths.ground_truth": data / "ground_truth",
                 "paths.ingested": data / "02_ingested", "paths.anonymized": data / "03_anonymized",
                 "paths.quality": data / "04_quality", "paths.splits": data / "05_splits",
                 "paths.lora": data / "06_models" / "lora", "paths.compressed": data / "06_models" / "compressed",
                 "paths.reports": data / "reports", "anonymize.registry": REPO / "schemas" / "recognizers.yaml",
                 "anonymize.workers": 1, "quality.k_folds": 3,
                 "anonymize.operators.CARD_EXPIRY": "encrypt"}.items():  # the encryption key is really used
        sets += ["--set", f"{k}={v}"]
    common = ["--params", str(REPO / "params.yaml"), *sets]
    cmds = {
        "demo-data": ["demo-data", "--out", str(data / "01_raw"), "--n", "200", "--seed", "3"],
        "ingest": ["ingest", "--sources", str(REPO / "schemas" / "sources.yaml"), "--out", str(data / "02_ingested")],
        "anonymize": ["anonymize", "--in", str(data / "02_ingested"), "--out", str(data / "03_anonymized"),
                      "--ground-truth", str(data / "ground_truth")],
        "quality": ["quality", "--in", str(data / "03_anonymized"), "--out", str(data / "04_quality")],
        "split": ["split", "--in", str(data / "04_quality"), "--out", str(data / "05_splits")],
        "report": ["report", "--out", str(data / "reports")],
    }
    order = ["demo-data", "ingest", "anonymize", *_stages(), "report"]
    prefix = ["unshare", "-n"] if UNSHARE else []
    results = {}
    for name in list(order):
        if name not in order:
            continue
        proc = subprocess.run([*prefix, str(FRAUDSLM), *cmds[name], *common], env=env, capture_output=True,
                              timeout=900, cwd=ws)
        (logs / f"{name}.stdout").write_bytes(proc.stdout)
        (logs / f"{name}.stderr").write_bytes(proc.stderr)
        results[name] = proc.returncode
        if name in OPTIONAL and proc.returncode != 0:
            # a later stage still being built: its failure log is scanned too; the report runs without it
            order = [n for n in order if n not in OPTIONAL]
            continue
        assert proc.returncode == 0, f"{name}: {proc.stderr.decode(errors='replace')[-2000:]}"
    return {"ws": ws, "data": data, "logs": logs, "tmp": tmp, "rc": results, "offline": bool(prefix)}


def test_no_key_in_any_written_file_or_log(chain) -> None:
    files = [p for p in chain["ws"].rglob("*") if p.is_file() and not p.is_symlink()]
    assert len(files) > 20
    found = []
    for f in files:
        blob = f.read_bytes()
        low = blob.lower()
        for name, forms in SECRETS.items():
            for form, needle in forms.items():
                if needle in blob or (form in ("hex", "HEX") and needle.lower() in low):
                    found.append(f"{f.relative_to(chain['ws'])}: {name} ({form})")
    assert not found, found


def test_report_records_the_key_fingerprint_and_signature(chain) -> None:
    from pipeline.anonymize.pseudonym import key_fingerprint
    from pipeline.report import verify_report

    fp = key_fingerprint(PSEUDO_KEY.encode())
    rep = chain["data"] / "reports"
    report_text = (rep / "report.json").read_text(encoding="utf-8")
    assert fp in report_text
    assert fp in (rep / "report.html").read_text(encoding="utf-8")
    gate = json.loads((chain["data"] / "03_anonymized" / "gate.json").read_text())
    assert gate["key_fingerprint"] == fp and gate["passed"] is True
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    pub = Ed25519PrivateKey.from_private_bytes(SIGN_SEED).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    res = verify_report(rep, public_key=base64.b64encode(pub).decode())
    assert res.signer is not None


def test_encrypted_values_only_decrypt_with_the_key(chain) -> None:
    from pipeline.anonymize.pseudonym import Encryptor

    recs = pd.read_parquet(chain["data"] / "03_anonymized" / "records.parquet")
    toks = sorted({m for t in recs["text"] for m in re.findall(r"<CARD_EXPIRY~[a-p]+>", t)})
    if not toks:
        pytest.skip("no card expiry in this demo sample")
    typ, value = Encryptor(ENC_KEY.encode()).decrypt(toks[0])
    assert typ == "CARD_EXPIRY" and value
    with pytest.raises(ValueError):
        Encryptor(PSEUDO_KEY.encode()).decrypt(toks[0])


def test_the_chain_ran_offline(chain) -> None:
    if not chain["offline"]:
        pytest.skip("`unshare -n true` fails here (needs root or user namespaces): the chain ran with the network")
    assert all(chain["rc"][n] == 0 for n in ("demo-data", "ingest", "anonymize", "report"))


def test_rotated_key_gives_disjoint_pseudonyms(chain, tmp_path, monkeypatch) -> None:
    from pipeline.anonymize import run_anonymize
    from pipeline.anonymize.pseudonym import key_fingerprint
    from pipeline.config import load_params

    monkeypatch.setenv("FRAUDSLM_PSEUDONYM_KEY", PSEUDO_KEY_2)
    monkeypatch.delenv("FRAUDSLM_ENCRYPTION_KEY", raising=False)
    params = load_params(REPO / "params.yaml", {"anonymize.workers": 1,
                                                "anonymize.registry": str(REPO / "schemas" / "recognizers.yaml")})
    m2 = run_anonymize(chain["data"] / "02_ingested", tmp_path / "anon2", params)
    assert m2["key_fingerprint"] == key_fingerprint(PSEUDO_KEY_2.encode()) != key_fingerprint(PSEUDO_KEY.encode())

    def tokens(folder: Path) -> set[str]:
        df = pd.read_parquet(folder / "records.parquet")
        out: set[str] = set()
        for col in df.columns:
            for v in df[col].dropna():
                if isinstance(v, str):
                    out.update(TOKEN.findall(v))
        return out

    t1, t2 = tokens(chain["data"] / "03_anonymized"), tokens(tmp_path / "anon2")
    assert len(t1) > 50 and len(t2) > 50
    assert not (t1 & t2), f"{len(t1 & t2)} pseudonym(s) shared between two keys"
    r1 = pd.read_parquet(chain["data"] / "03_anonymized" / "records.parquet", columns=["record_id", "group_id"])
    r2 = pd.read_parquet(tmp_path / "anon2" / "records.parquet", columns=["record_id", "group_id"])
    assert sorted(r1["record_id"]) == sorted(r2["record_id"])  # same records, only the pseudonyms change
    assert not set(r1["group_id"].dropna()) & set(r2["group_id"].dropna())


# ----------------------------------------------------------------------------------- in-process socket guard


@pytest.fixture
def no_network(monkeypatch):
    """Any internet socket connection (or name lookup) fails the test."""
    attempts: list[str] = []

    def refuse_connect(self, address, *a, **kw):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(f"connect {address!r}")
            raise OSError("network disabled by the test")
        return real_connect(self, address, *a, **kw)

    def refuse_lookup(host, *a, **kw):
        attempts.append(f"getaddrinfo {host!r}")
        raise socket.gaierror("network disabled by the test")

    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", refuse_lookup)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **kw: refuse_connect(socket.socket(), a[0]))
    return attempts


def test_detector_ingest_and_anonymize_open_no_socket(no_network, tmp_path, monkeypatch) -> None:
    from pipeline.anonymize import run_anonymize
    from pipeline.anonymize.detect import build_detector
    from pipeline.config import DemoParams, load_params
    from pipeline.demo import generate
    from pipeline.ingest import run_ingest

    monkeypatch.setenv("FRAUDSLM_PSEUDONYM_KEY", PSEUDO_KEY)
    params = load_params(REPO / "params.yaml", {"paths.raw": str(tmp_path / "raw"), "anonymize.workers": 1,
                                                "anonymize.registry": str(REPO / "schemas" / "recognizers.yaml")})
    det = build_detector(params.anonymize)  # a fresh build: spaCy model + Presidio registry, no hub
    assert det.detect("my card 4111 1111 1111 1111")
    generate(out=tmp_path / "raw", truth_out=tmp_path / "truth", n=60, seed=5, params=DemoParams())
    run_ingest(REPO / "schemas" / "sources.yaml", tmp_path / "ing", params, ground_truth=tmp_path / "truth")
    run_anonymize(tmp_path / "ing", tmp_path / "anon", params)
    assert (tmp_path / "anon" / "records.parquet").exists()
    assert no_network == [], no_network


def test_socket_guard_really_blocks(no_network) -> None:
    with pytest.raises(OSError):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    assert no_network


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dvc_repro_offline(dvc_template, tmp_path) -> None:
    """`dvc repro` of the pipeline (up to the last stage whose code exists) inside `unshare -n`."""
    if not UNSHARE:
        pytest.skip("`unshare -n true` fails here (needs root or user namespaces)")
    from pipeline import dvcops

    ws = dvcops.copy_workspace(dvc_template, tmp_path / "repo")
    until = "split" if _has_stage_code("pipeline.split") else ("quality" if _has_stage_code("pipeline.quality")
                                                                 else "anonymize")
    env = dict(dvcops.tool_env(None))
    env["PATH"] = f"{BIN}:{env.get('PATH', '')}"
    proc = subprocess.run(["unshare", "-n", sys.executable, "-m", "dvc", "repro", until], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


# ------------------------------------------------------------------------------------------ spreadsheet export


FORMULAS = ["=HYPERLINK(\"http://x.example\",\"y\")", "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1",
            "=cmd|' /C calc'!A0", "-", "+", "note\r=HYPERLINK(\"x\")", "a\n@SUM(1)"]  # CR/LF mid-cell: must stay in the cell


def test_spreadsheet_export_neutralizes_formulas(tmp_path) -> None:
    try:
        from pipeline.quality.report import neutralize_cell, write_review_queue
    except ImportError:
        pytest.skip("pipeline.quality.report (reviewer queue export) not present yet")
    import csv

    for f in FORMULAS:
        if f[:1] in "=+-@\t\r":
            assert neutralize_cell(f).startswith("'"), f
    for ok in ["plain text", "3.5", "", "C000123"]:
        assert neutralize_cell(ok) == ok
    assert neutralize_cell(3.5) == 3.5
    scored = pd.DataFrame({
        "record_id": [f"r{i}" for i in range(len(FORMULAS))], "source": FORMULAS,
        "text": [f for f in FORMULAS], "given_label": [1] * len(FORMULAS), "suggested_label": [0] * len(FORMULAS),
        "label_quality_score": [0.1] * len(FORMULAS), "pred_prob_fraud": [0.2] * len(FORMULAS),
        "decision": ["flag"] * len(FORMULAS), "decision_reason": FORMULAS,
    })
    write_review_queue(scored, tmp_path)
    with open(tmp_path / "review_queue.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == len(FORMULAS) + 1  # no row split by a CR or LF inside a cell
    cells = [c for row in rows for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
