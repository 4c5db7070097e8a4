"""Faults and bad input: nothing is lost, nothing half-written is visible, nothing crashes or hangs.

* Kill and resume: each stage runs as a `fraudslm` subprocess, is SIGKILLed at seeded random points, the output
  folder is checked (every file under its final name parses; temp files are hidden dotfiles), then the stage is
  re-run and compared byte for byte with an uninterrupted run.
* Bad-input corpus for ingest (beyond tests/test_sources.py and tests/test_ingest.py): every case runs the real
  CLI in a subprocess with an address-space limit (RLIMIT_AS) and a wall-clock timeout, and must end with exit 0
  (bad rows quarantined, ledger balanced) or exit 2 with one clear `fraudslm:` line, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import TEST_KEY, _has_stage_code

REPO = Path(__file__).resolve().parent.parent
FRAUDSLM = Path(sys.executable).parent / "fraudslm"
PARAMS = REPO / "params.yaml"
MEM_LIMIT = 3 * 1024**3  # bytes of address space for every bad-input run
TIMING_KEYS = {"seconds", "detect_seconds", "records_per_s", "replace_seconds", "gate_seconds", "wall_seconds"}


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FRAUDSLM_PSEUDONYM_KEY"] = TEST_KEY
    env["TMPDIR"] = str(tmp)  # stage-private temp folders land here, so a killed run's leftovers can be inspected
    env.pop("FRAUDSLM_DEBUG", None)
    return env


# ============================================================================================ kill and resume


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict[str, Path]:
    """A 200-record demo (a fresh one: small enough that the anonymize stage runs in seconds)."""
    from pipeline.config import DemoParams
    from pipeline.demo import generate

    base = tmp_path_factory.mktemp("faults-demo")
    generate(out=base / "01_raw", truth_out=base / "ground_truth", n=200, seed=11, params=DemoParams())
    return {"base": base, "raw": base / "01_raw", "truth": base / "ground_truth"}


def _stage_cmd(stage: str, demo: dict[str, Path], out: Path) -> list[str]:
    common = ["--params", str(PARAMS), "--set", f"paths.raw={demo['raw']}",
              "--set", f"paths.ground_truth={demo['truth']}"]
    base = demo["base"]
    if stage == "ingest":
        return [str(FRAUDSLM), "ingest", "--sources", str(REPO / "schemas" / "sources.yaml"), "--out", str(out),
                "--ground-truth", str(demo["truth"]), *common]
    if stage == "anonymize":
        return [str(FRAUDSLM), "anonymize", "--in", str(base / "ref-ingest"), "--out", str(out),
                "--ground-truth", str(demo["truth"]), *common, "--set", "anonymize.workers=1",
                "--set", f"anonymize.registry={REPO / 'schemas' / 'recognizers.yaml'}"]
    prev = {"quality": "ref-anonymize", "split": "ref-quality"}[stage]
    return [str(FRAUDSLM), stage, "--in", str(base / prev), "--out", str(out), *common,
            "--set", "quality.k_folds=3", "--set", "split.min_minority_per_split=0",  # 200 records: a handful of fraud
            "--set", "split.train_flagged=keep"]


def _visible_files(folder: Path) -> list[Path]:
    """Files a consumer would read: no path component starting with a dot."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _assert_parses(path: Path) -> None:
    if path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix in (".json",):
        json.loads(path.read_text(encoding="utf-8"))
    elif path.suffix == ".jsonl":
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                json.loads(line)
    else:
        path.read_bytes()


def _normalised(path: Path) -> bytes:
    """File bytes; metrics.json without its wall-clock timings, timings.json (volatile by design, kept apart from
    the hashed metrics) as its keys only: the only run-dependent values."""
    if path.name == "timings.json":
        return json.dumps(sorted(json.loads(path.read_text(encoding="utf-8")))).encode()
    if path.name == "metrics.json":
        def strip(o):
            if isinstance(o, dict):
                return {k: strip(v) for k, v in o.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
            if isinstance(o, list):
                return [strip(v) for v in o]
            return o
        return json.dumps(strip(json.loads(path.read_text(encoding="utf-8"))), sort_keys=True).encode()
    return path.read_bytes()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): _normalised(p) for p in _visible_files(folder)}


def _run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _reference_runs(demo, stages: list[str], refs: dict, tmp: Path) -> dict[str, dict]:
    """Uninterrupted runs (each output also feeds the next stage's kill test)."""
    for stage in stages:
        if stage in refs:
            continue
        if stage != stages[0] and stages[stages.index(stage) - 1] not in refs:
            break
        out = demo["base"] / f"ref-{stage}"
        t0 = time.monotonic()
        proc = _run(_stage_cmd(stage, demo, out), _env(tmp))
        assert proc.returncode == 0, proc.stderr[-2000:]
        refs[stage] = {"snapshot": _snapshot(out), "seconds": time.monotonic() - t0}
    return refs


_REFS: dict[str, dict] = {}


@pytest.fixture(scope="module")
def references(demo, tmp_path_factory) -> dict[str, dict]:
    """Reference runs of ingest and anonymize."""
    return _reference_runs(demo, ["ingest", "anonymize"], _REFS, tmp_path_factory.mktemp("faults-tmp"))


@pytest.fixture(scope="module")
def all_references(demo, references, tmp_path_factory) -> dict[str, dict]:
    """Reference runs of every stage that exists (quality and split only for the slow test)."""
    return _reference_runs(demo, _stages(), references, tmp_path_factory.mktemp("faults-tmp-all"))


def _stages() -> list[str]:
    stages = ["ingest", "anonymize"]
    for st in ("quality", "split"):
        if not _has_stage_code(f"pipeline.{st}"):
            break
        stages.append(st)
    return stages


def _kill_and_resume(stage: str, demo, references, tmp_path: Path, fractions: list[float]) -> None:
    ref = references[stage]
    env = _env(tmp_path)
    out = tmp_path / "out"
    for frac in fractions:
        proc = subprocess.Popen(_stage_cmd(stage, demo, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(frac * ref["seconds"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        for f in _visible_files(out):  # whatever is visible under its final name is complete
            _assert_parses(f)
        assert not [p for p in out.iterdir() if p.is_file() and p.name.endswith(".tmp")
                    and not p.name.startswith(".")] if out.exists() else True
    done = _run(_stage_cmd(stage, demo, out), env)
    assert done.returncode == 0, done.stderr[-2000:]
    got = _snapshot(out)
    assert sorted(got) == sorted(ref["snapshot"])
    diff = [name for name in got if got[name] != ref["snapshot"][name]]
    assert not diff, f"{stage}: resumed run differs from an uninterrupted run in {diff}"


def _fractions(stage: str, n: int) -> list[float]:
    rng = random.Random(f"kill-{stage}")  # seeded: the same kill points every run
    return [round(rng.uniform(0.15, 0.95), 3) for _ in range(n)]


@pytest.mark.timeout(600)
def test_ingest_killed_then_resumed_is_byte_identical(demo, references, tmp_path) -> None:
    _kill_and_resume("ingest", demo, references, tmp_path, _fractions("ingest", 3))


@pytest.mark.timeout(600)
def test_anonymize_killed_then_resumed_is_byte_identical(demo, references, tmp_path) -> None:
    _kill_and_resume("anonymize", demo, references, tmp_path, _fractions("anonymize", 1))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("stage", ["ingest", "anonymize", "quality", "split"])
def test_killed_many_times_then_resumed_is_byte_identical(stage, demo, all_references, tmp_path) -> None:
    references = all_references
    if stage not in references:
        pytest.skip(f"pipeline.{stage}: no stage function")
    _kill_and_resume(stage, demo, references, tmp_path, _fractions(f"{stage}-slow", 5))


def test_kill_during_a_rerun_keeps_the_previous_outputs_readable(demo, references, tmp_path) -> None:
    """A re-run killed half-way over a complete earlier output: every visible file still parses, and the ledger
    visible is a balanced one."""
    env = _env(tmp_path)
    out = tmp_path / "out"
    shutil.copytree(demo["base"] / "ref-ingest", out)
    for frac in _fractions("rerun", 3):
        proc = subprocess.Popen(_stage_cmd("ingest", demo, out), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(frac * references["ingest"]["seconds"])
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        for f in _visible_files(out):
            _assert_parses(f)
        assert json.loads((out / "ledger.json").read_text())["balanced"] is True
    assert _snapshot(out) == references["ingest"]["snapshot"]  # same inputs: old and new are the same bytes


# ======================================================================== failed gate: downstream refuses


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_downstream_refuses_an_anonymize_output_whose_gate_failed(tmp_path: Path) -> None:
    """A card in a `keep` column makes the gate fail (exit 1, no records published; the broken-recognizer case is
    tests/test_gate.py::test_broken_detector_is_caught_by_the_gate); the quality stage then refuses the folder, and
    also refuses a folder whose records.parquet was put back by hand next to the failed gate.json."""
    if not _has_stage_code("pipeline.quality"):
        pytest.skip("pipeline.quality has no stage function yet")
    import pandas as pd

    rows = []
    for i in range(40):
        key = f"K{i:03d}"
        rid = __import__("hashlib").sha256(f"chats\x1f{key}".encode()).hexdigest()[:16]
        rows.append({"record_id": rid, "source": "chats", "source_key": key, "text": f"message number {i} about fees",
                     "label": i % 2, "group_id": f"C{i:06d}", "event_time": pd.Timestamp("2024-01-01", tz="UTC"),
                     "dup_cluster": rid, "label_conflict": False,
                     "merchant_id": "MER 4111 1111 1111 1111" if i == 3 else "MER001"})
    df = pd.DataFrame(rows)
    df["label"] = df["label"].astype("Int8")
    (tmp_path / "in").mkdir()
    df.to_parquet(tmp_path / "in" / "records.parquet", index=False)
    env = _env(tmp_path)
    anon = tmp_path / "anon"
    proc = _run([str(FRAUDSLM), "anonymize", "--in", str(tmp_path / "in"), "--out", str(anon), "--params", str(PARAMS),
                 "--set", "anonymize.workers=1", "--set", "anonymize.columns.merchant_id=keep",
                 "--set", f"anonymize.registry={REPO / 'schemas' / 'recognizers.yaml'}"], env)
    assert proc.returncode == 1 and "4111" not in proc.stderr, proc.stderr[-1000:]
    assert not (anon / "records.parquet").exists()
    for attempt in ("as published", "records put back"):
        if attempt == "records put back":
            df.to_parquet(anon / "records.parquet", index=False)
        q = _run([str(FRAUDSLM), "quality", "--in", str(anon), "--out", str(tmp_path / "q"), "--params", str(PARAMS),
                  "--set", "quality.k_folds=3"], env)
        lines = [ln for ln in q.stderr.splitlines() if ln.strip()]
        assert q.returncode == 1, (attempt, q.stderr[-1000:])
        assert len(lines) == 1 and "gate" in lines[0], (attempt, lines)
        assert not _visible_files(tmp_path / "q") or not (tmp_path / "q" / "records.parquet").exists()


# ================================================================================== bad-input corpus (ingest)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEM_LIMIT, MEM_LIMIT))


def _ingest_cli(tmp_path: Path, sources: list[dict], raw: Path | None = None, timeout: float = 120):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "sources": sources}, sort_keys=False), encoding="utf-8")
    out = tmp_path / "out"
    cmd = [str(FRAUDSLM), "ingest", "--sources", str(cfg), "--out", str(out), "--params", str(PARAMS),
           "--set", f"paths.raw={raw or tmp_path}", "--ground-truth", str(tmp_path / "no-truth")]
    proc = subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_limit_memory)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "internal error" not in proc.stderr, proc.stderr[-500:]
    if proc.returncode == 0:
        ledger = json.loads((out / "ledger.json").read_text())
        assert ledger["balanced"] is True
        quarantine = pq.read_table(out / "quarantine.parquet").to_pandas()
        return {"rc": 0, "ledger": ledger, "quarantine": quarantine, "stderr": proc.stderr,
                "records": pq.read_table(out / "records.parquet").to_pandas()}
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-1000:])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("fraudslm: "), proc.stderr[-1000:]
    assert not (out / "records.parquet").exists()
    return {"rc": 2, "error": lines[0]}


def _src(name: str, kind: str, location: str, **kw) -> dict:
    return {"name": name, "kind": kind, "location": location, "key": "id", "text": "{text}", **kw}


@pytest.mark.timeout(180)
def test_jsonl_deeply_nested_and_mixed_line_endings(tmp_path: Path) -> None:
    deep = "[" * 200_000 + "]" * 200_000
    lines = [
        json.dumps({"id": "1", "text": "first line, CRLF"}) + "\r\n",
        json.dumps({"id": "2", "text": "second, bare CR"}) + "\r",
        json.dumps({"id": "3", "text": "third, LF"}) + "\n",
        '{"id": "4", "text": ' + deep + "}\n",  # nesting deep enough to blow a recursive parser
        '{"id": "5", "text": "nested", "extra": ' + "{\"a\": " * 50_000 + "1" + "}" * 50_000 + "}\n",
        json.dumps({"id": "6", "text": "line\u2028separator\u0085inside"}) + "\n",
    ]
    (tmp_path / "t.jsonl").write_bytes("".join(lines).encode("utf-8"))
    res = _ingest_cli(tmp_path, [_src("j", "jsonl", "${raw}/t.jsonl")])
    assert res["rc"] == 0
    src = res["ledger"]["sources"]["j"]
    assert src["read"] == src["accepted"] + src["quarantined"] + src["duplicates"]
    texts = set(res["records"]["text"])
    assert {"first line, CRLF", "third, LF"} <= texts
    assert "4" not in set(res["records"]["source_key"])  # the bomb is quarantined, not accepted as text
    assert (res["quarantine"]["raw"].fillna("").str.len() <= 1_100_000).all()


@pytest.mark.timeout(180)
def test_wide_header_end_to_end_in_bounded_memory(tmp_path: Path) -> None:
    cols = 100_000
    (tmp_path / "wide.csv").write_text(",".join(f"c{i}" for i in range(cols)) + "\n"
                                       + ",".join("1" for _ in range(cols)) + "\n")
    res = _ingest_cli(tmp_path, [_src("w", "csv", "${raw}/wide.csv", key="c0", text="{c1}")])
    assert res["rc"] == 0
    assert res["ledger"]["sources"]["w"]["accepted"] == 0
    assert "too_many_columns" in set(res["quarantine"]["reason"])


@pytest.mark.timeout(180)
def test_truncated_and_fake_gzip(tmp_path: Path) -> None:
    good = gzip.compress(b"id,text\n1,fine\n2,also fine\n")
    (tmp_path / "trunc.csv.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "fake.csv.gz").write_bytes(b"id,text\n1,not really gzip\n")
    res = _ingest_cli(tmp_path, [_src("trunc", "csv", "${raw}/trunc.csv.gz"), _src("fake", "csv", "${raw}/fake.csv.gz")])
    if res["rc"] == 2:  # a clear refusal naming the file is acceptable too
        assert ".csv.gz" in res["error"]
        return
    led = res["ledger"]["sources"]
    assert led["trunc"]["quarantined"] >= 1 or led["trunc"]["read"] == 0
    assert led["fake"]["accepted"] == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_gzip_bomb(tmp_path: Path) -> None:
    """400 MB of one never-ending line compressed to ~400 KB: cut at max_field_bytes and quarantined, in bounded
    memory, never accepted."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"a" * (1 << 20)
    with open(tmp_path / "bomb.csv.gz", "wb") as fh:
        fh.write(comp.compress(b"id,text\n1,"))
        for _ in range(400):
            fh.write(comp.compress(chunk))
        fh.write(comp.flush())
    res = _ingest_cli(tmp_path, [_src("bomb", "csv", "${raw}/bomb.csv.gz")], timeout=500)
    if res["rc"] == 2:
        assert ".csv.gz" in res["error"]
        return
    led = res["ledger"]["sources"]
    assert led["bomb"]["accepted"] == 0 and led["bomb"]["quarantined"] >= 1
    assert (res["quarantine"]["raw"].fillna("").str.len() <= 1_100_000).all()


@pytest.mark.timeout(120)
def test_symlink_inside_an_eml_folder_pointing_outside(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "secret.eml"
    secret.parent.mkdir()
    secret.write_text("From: a@b.example\nSubject: outside\nMessage-ID: <x@y>\n\nshould never be read\n")
    raw = tmp_path / "raw"
    (raw / "mail").mkdir(parents=True)
    (raw / "mail" / "ok.eml").write_text("From: c@d.example\nSubject: inside\nMessage-ID: <z@y>\n\nhello\n")
    os.symlink(secret, raw / "mail" / "link.eml")
    os.symlink(tmp_path / "outside", raw / "mail" / "linkdir")
    res = _ingest_cli(tmp_path, [{"name": "m", "kind": "eml", "location": "${raw}/mail", "text": "{body}"}], raw=raw)
    if res["rc"] == 2:
        assert "symlink" in res["error"] or "outside" in res["error"]
        return
    assert not any("should never be read" in t for t in res["records"]["text"])
    assert not res["quarantine"]["raw"].fillna("").str.contains("should never be read").any()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("location,name", [
    ("/etc/passwd", "abs"),
    ("${raw}/./sub/../../../../etc/hostname", "dots"),
    ("${raw}/t.csv", "../../escape"),
    ("${raw}/t.csv\x00.parquet", "nul"),
])
def test_traversal_in_the_source_config(tmp_path: Path, location: str, name: str) -> None:
    (tmp_path / "t.csv").write_text("id,text\n1,x\n")
    res = _ingest_cli(tmp_path, [_src(name, "csv", location)])
    if res["rc"] == 0:  # only acceptable when nothing outside was read or written
        assert set(res["ledger"]["sources"]) == {name}
        assert not (tmp_path.parent / "escape").exists()
        assert location.startswith("${raw}/t.csv") and "\x00" not in location
    else:
        assert "\n" not in res["error"]


def test_memory_limit_is_really_applied(tmp_path: Path) -> None:
    """Guard for the corpus above: the limit is in force in the child (allocating past it fails there)."""
    code = "import sys\ntry:\n    b = bytearray(4 * 1024**3)\nexcept MemoryError:\n    sys.exit(7)\n"
    proc = subprocess.run([sys.executable, "-c", code], preexec_fn=_limit_memory, timeout=60)
    assert proc.returncode == 7
