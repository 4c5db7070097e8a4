"""First contact: careless input through the real `fraudslm` CLI gets its exit code and one clear line.

Exit codes (DESIGN.md): 0 done, 1 a gate failed (here: an input gate of ingest), 2 usage or configuration.
Each test writes tiny real files into tmp_path and runs the real command (typer's CliRunner: same process, the
real stage code, nothing mocked).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.config import REPO_ROOT, load_params
from pipeline.errors import ConfigError

PARAMS = REPO_ROOT / "params.yaml"
HEADER = "id,text,label\n"


def cli(*args: str, env: dict[str, str] | None = None):
    res = CliRunner().invoke(app, list(args), env=env)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    return res.exit_code, lines


def ingest(tmp_path: Path, *sources: dict[str, Any], sets: tuple[str, ...] = ()):
    cfg = tmp_path / "sources.yaml"
    cfg.write_text(yaml.safe_dump({"version": 1, "sources": list(sources)}, sort_keys=False), encoding="utf-8")
    return cli("ingest", "--sources", str(cfg), "--out", str(tmp_path / "out"), "--params", str(PARAMS),
               "--set", f"paths.raw={tmp_path}", "--set", "paths.ground_truth=null", *sets)


def csv_src(name: str, file: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "csv", "location": "${raw}/" + file, "key": "id", "text": "{text}",
            "label": {"field": "label", "mapping": {"1": 1, "0": 0}}, **kw}


def good_csv(path: Path, n: int = 5) -> None:
    path.write_text(HEADER + "".join(f"{i},message number {i} about a payment,{i % 2}\n" for i in range(n)),
                    encoding="utf-8")


# ------------------------------------------------------------------------------------------------- encoding


def test_cp1252_declared_utf8_fails_with_an_encoding_hint(tmp_path: Path) -> None:
    rows = [f"{i},Zahlung für Café Nr. {i} – bitte prüfen,{i % 2}\n" for i in range(19)]
    (tmp_path / "t.csv").write_bytes((HEADER + "".join(rows)).encode("cp1252"))
    code, lines = ingest(tmp_path, csv_src("t", "t.csv"))
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("fraudslm: source 't': 19 of 19 rows do not decode as utf-8")
    assert "options.encoding" in lines[0] and "ingest.max_bad_row_share" in lines[0]
    assert "cp1252" in lines[0]  # detected (charset-normalizer) and suggested
    # the suggested option fixes it
    code, lines = ingest(tmp_path, csv_src("t", "t.csv", options={"encoding": "cp1252"}))
    assert code == 0, lines


def test_a_few_undecodable_rows_are_quarantined_not_fatal(tmp_path: Path) -> None:
    good_csv(tmp_path / "t.csv", 9)
    with open(tmp_path / "t.csv", "ab") as fh:
        fh.write(b"9,bad \xff byte,1\n")
    code, lines = ingest(tmp_path, csv_src("t", "t.csv"))
    assert code == 0, lines
    q = json.loads((tmp_path / "out" / "metrics.json").read_text())["sources"]["t"]["quarantine_reasons"]
    assert q == {"bad_encoding": 1}


# ------------------------------------------------------------------------------------------------- empty


@pytest.mark.parametrize("content", ["", HEADER], ids=["empty_file", "header_only"])
def test_empty_source_exits_1_unless_optional(tmp_path: Path, content: str) -> None:
    good_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text(content, encoding="utf-8")
    code, lines = ingest(tmp_path, csv_src("a", "a.csv"), csv_src("b", "b.csv"))
    assert code == 1, lines
    assert len(lines) == 1 and lines[0].startswith("fraudslm: empty source(s) 'b' (b.csv)")
    assert "optional: true" in lines[0]
    code, lines = ingest(tmp_path, csv_src("a", "a.csv"), csv_src("b", "b.csv", optional=True))
    assert code == 0, lines
    assert lines[-1].startswith("ingest: read ")


# ------------------------------------------------------------------------------------------------- --in typo


@pytest.mark.parametrize("stage", ["anonymize", "quality", "split", "train", "compress"])
def test_missing_input_folder_is_not_found_exit_2(tmp_path: Path, stage: str) -> None:
    missing = tmp_path / "data" / "04_qualty"
    code, lines = cli(stage, "--in", str(missing), "--out", str(tmp_path / "out"), "--params", str(PARAMS),
                      env={"FRAUDSLM_PSEUDONYM_KEY": "k" * 32})
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"fraudslm: {missing}: ") and "not found" in lines[0]
    assert "gate" not in lines[0]
    assert not (tmp_path / "out").exists()


def test_compress_missing_splits_folder_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "lora").mkdir()
    code, lines = cli("compress", "--in", str(tmp_path / "lora"), "--splits", str(tmp_path / "nope"),
                      "--out", str(tmp_path / "out"), "--params", str(PARAMS))
    assert code == 2 and "splits folder not found" in lines[0], lines


# ------------------------------------------------------------------------------------------------- delimiter


@pytest.mark.parametrize("delim", [";", "\t", "|"])
def test_other_delimiter_gets_a_hint(tmp_path: Path, delim: str) -> None:
    cols = ["id", "text", "label"] + [f"f{i}" for i in range(17)]
    body = delim.join(cols) + "\n" + delim.join(["1", "hello there", "0"] + ["x"] * 17) + "\n"
    (tmp_path / "t.csv").write_text(body, encoding="utf-8")
    fields = {f"f{i}": f"c_{i}" for i in range(17)}
    code, lines = ingest(tmp_path, csv_src("t", "t.csv", fields=fields))
    assert code == 2, lines
    assert len(lines) == 1 and "header lacks 20 of the 20 field(s)" in lines[0]
    shown = "\\t" if delim == "\t" else delim
    assert f"looks '{shown}'-delimited: set `options.delimiter: \"{shown}\"`" in lines[0]
    assert "hello there" not in lines[0] and len(lines[0]) < 400


def test_missing_field_with_the_right_delimiter_gets_no_delimiter_hint(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("id,txt,label\n1,hi,0\n", encoding="utf-8")
    code, lines = ingest(tmp_path, csv_src("t", "t.csv"))
    assert code == 2 and "['text']" in lines[0] and "delimiter" not in lines[0], lines


# ------------------------------------------------------------------------------------------------- unknown keys


def test_set_typo_names_set_and_suggests(tmp_path: Path) -> None:
    code, lines = cli("ingest", "--sources", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "o"),
                      "--params", str(PARAMS), "--set", "quality.kfolds=3")
    assert code == 2, lines
    assert lines == ["fraudslm: --set quality.kfolds: unknown key 'quality.kfolds' (did you mean quality.k_folds?)"]


def test_params_file_typo_names_the_file_and_suggests(tmp_path: Path) -> None:
    doc = yaml.safe_load(PARAMS.read_text())
    doc["split"]["tset_size"] = doc["split"].pop("test_size")
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key 'split.tset_size' \(did you mean split.test_size\?\)"):
        load_params(p)
    with pytest.raises(ConfigError, match=r"unknown key 'qualty' \(did you mean quality\?\)"):
        load_params(None, {"qualty.k_folds": 3})
    with pytest.raises(ConfigError, match=r"--set quality.k_folds.x: quality.k_folds is a value, not a section"):
        load_params(PARAMS, {"quality.k_folds.x": 3})


# ------------------------------------------------------------------------------------------------- the key


def test_anonymize_without_the_key_is_a_one_line_usage_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FRAUDSLM_PSEUDONYM_KEY", raising=False)
    (tmp_path / "in").mkdir()
    code, lines = cli("anonymize", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
                      "--params", str(PARAMS))
    assert code == 2 and len(lines) == 1 and "FRAUDSLM_PSEUDONYM_KEY is not set" in lines[0], lines


def _make(target: str, cwd: Path, env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    import os

    env = {k: v for k, v in os.environ.items() if k != "FRAUDSLM_PSEUDONYM_KEY"} | env_extra
    return subprocess.run(["make", "-s", "-f", str(REPO_ROOT / "Makefile"), target, f"BIN={REPO_ROOT}/.venv/bin"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_make_refuses_own_sources_without_a_key_before_dvc(tmp_path: Path) -> None:
    """`make run` checks the key before DVC runs anything (DVC would first delete anonymize's outputs); the
    public demo key is used for the shipped demo config only, with a warning."""
    doc = yaml.safe_load(PARAMS.read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = _make("check-key", tmp_path, {})
    assert proc.returncode == 0 and "PUBLIC DEMO KEY" in proc.stderr, proc.stderr
    doc["paths"]["sources"] = "my/sources.yaml"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    proc = _make("check-key", tmp_path, {})
    assert proc.returncode != 0, proc.stderr
    assert proc.stderr.splitlines()[0].startswith("fraudslm: FRAUDSLM_PSEUDONYM_KEY is not set"), proc.stderr
    assert "my/sources.yaml" in proc.stderr
    assert _make("check-key", tmp_path, {"FRAUDSLM_PSEUDONYM_KEY": "x" * 32}).returncode == 0


# ------------------------------------------------------------------------------------------------- summary lines


def test_each_stage_prints_one_summary_line_from_its_metrics(tmp_path: Path) -> None:
    """The CLI's summary lines read the keys the stages write (checked against the committed demo metrics)."""
    from pipeline import cli as c

    for folder, stage in (("03_anonymized", "anonymize"), ("04_quality", "quality"), ("05_splits", "split"),
                          ("06_models/lora", "train"), ("06_models/compressed", "compress")):
        f = REPO_ROOT / "data" / folder / "metrics.json"
        if not f.exists():
            continue
        m = json.loads(f.read_text())
        assert c._get(m, "stage", default=stage) == stage
    assert c._get({"a": {"b": [1, 2]}}, "a", "b", 1) == 2 and c._get({}, "a", default="?") == "?"
    assert c._fmt(0.12345) == "0.123" and c._fmt(None) == "?"


# ------------------------------------------------------------------------------------------------- ground truth


def test_ground_truth_is_off_by_default_and_recorded_as_a_portable_path(tmp_path: Path) -> None:
    """No evaluation unless paths.ground_truth names a folder; when it does, metrics never hold a machine path."""
    from pipeline.config import ground_truth_dir
    from pipeline.ingest import _portable

    assert load_params(None).paths.ground_truth is None and ground_truth_dir(load_params(None)) is None
    assert load_params(PARAMS).paths.ground_truth == "data/ground_truth"  # the demo names it
    good_csv(tmp_path / "t.csv")
    code, lines = ingest(tmp_path, csv_src("t", "t.csv"))
    assert code == 0, lines
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["evaluation"] is None
    assert _portable(REPO_ROOT / "data" / "ground_truth", REPO_ROOT) == "data/ground_truth"
    assert _portable(tmp_path / "truth", REPO_ROOT) == "truth"
    (tmp_path / "truth").mkdir()
    code, lines = ingest(tmp_path, csv_src("t", "t.csv"), sets=("--ground-truth", str(tmp_path / "truth")))
    assert code == 0, lines
    ev = json.loads((tmp_path / "out" / "metrics.json").read_text())["evaluation"]
    assert ev["ground_truth"] == "truth" and str(tmp_path) not in json.dumps(ev)


def test_plots_render_offline() -> None:
    """`dvc plots show` embeds images; a Vega plot would load vega from a CDN (blank offline)."""
    doc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    for entry in doc["plots"]:
        path, spec = (entry, None) if isinstance(entry, str) else next(iter(entry.items()))
        assert spec is None or "template" not in spec, entry
        assert path.endswith((".png", ".svg", "/plots")), entry
    assert "/dvc_plots/" in (REPO_ROOT / ".gitignore").read_text().splitlines()


# ------------------------------------------------------------------------------------------------- docs


def test_benchmark_docs_and_readme_figures_are_generated_from_the_results() -> None:
    """docs/benchmarks.md and README.md's headline table equal what benchmarks/make_docs.py renders from
    benchmarks/results/*.json: after a benchmark run, `make docs` (python -m benchmarks.make_docs) refreshes both."""
    from benchmarks import make_docs

    assert (REPO_ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8") == make_docs.render(), \
        "docs/benchmarks.md is stale: run `python -m benchmarks.make_docs`"
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert readme == make_docs.update_readme(readme, make_docs.headline()), \
        "README.md's headline table is stale: run `python -m benchmarks.make_docs`"
    assert make_docs.main(["--check"]) == 0


def test_readme_is_short_and_every_command_is_documented() -> None:
    import typer.main

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.encode("utf-8")) <= 12_500
    for needed in ("source .venv/bin/activate", "make shell", "Python 3.11", "Chromium", "FRAUDSLM_PSEUDONYM_KEY",
                   "paths.ground_truth: null", "fraudslm predict"):
        assert needed in readme, needed
    docs = readme + "".join(p.read_text(encoding="utf-8") for p in sorted((REPO_ROOT / "docs").glob("*.md")))
    names = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    missing = [n for n in names if f"fraudslm {n}" not in docs]
    assert not missing, f"commands not documented in README.md or docs/: {missing}"
