"""Contract: dvc.yaml, params.yaml, the config models, the CLI, the data contracts, the remotes and prefect.yaml
agree with each other. Static checks only (no stage runs): fast."""

from __future__ import annotations

import inspect
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import Params, load_params

ROOT = Path(__file__).resolve().parent.parent
DVC_YAML = ROOT / "dvc.yaml"
PARAMS_YAML = ROOT / "params.yaml"
CONTRACTS = ROOT / "docs" / "data_contracts.md"
RESTRICTED_PATH_KEYS = ("raw", "ground_truth", "ingested")


@pytest.fixture(scope="module")
def dvc_doc() -> dict:
    return yaml.safe_load(DVC_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def params_doc() -> dict:
    return yaml.safe_load(PARAMS_YAML.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def index():
    """dvc.yaml as DVC resolves it: {stage: {"cmd", "deps", "outs": {path: out}, "params"}}."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    stages = {}
    with Repo(str(ROOT)) as r:
        root = Path(r.root_dir).resolve()
        for s in r.index.stages:
            if not isinstance(s, PipelineStage):
                continue
            rel = lambda o: str(Path(o.fs_path).resolve().relative_to(root))  # noqa: E731
            stages[s.name] = {
                "cmd": s.cmd,
                "deps": [rel(d) for d in s.deps if not hasattr(d, "params")],
                "outs": {rel(o): o for o in s.outs},
            }
    return stages


def _lookup(doc: dict, dotted: str):
    cur = doc
    for key in dotted.split("."):
        if not isinstance(cur, dict) or key not in cur:
            raise KeyError(dotted)
        cur = cur[key]
    return cur


def test_params_yaml_validates():
    p = load_params(PARAMS_YAML)
    assert isinstance(p, Params)


def test_every_template_resolves_in_params(params_doc):
    refs = re.findall(r"\$\{([^}]+)\}", DVC_YAML.read_text(encoding="utf-8"))
    assert refs, "dvc.yaml should template its paths from params.yaml"
    missing = []
    for ref in sorted(set(refs)):
        try:
            value = _lookup(params_doc, ref.strip())
        except KeyError:
            missing.append(ref)
            continue
        assert isinstance(value, (str, int, float)), f"${{{ref}}} is not a scalar"
    assert not missing, f"unresolved in params.yaml: {missing}"


def test_paths_declared_once(dvc_doc, params_doc):
    """No data path is spelled out in dvc.yaml: every one comes from params.yaml `paths`."""
    text = DVC_YAML.read_text(encoding="utf-8")
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    for value in params_doc["paths"].values():
        assert value not in body, f"{value} is hard-coded in dvc.yaml; use ${{paths.*}}"


# the only settings a stage reads from another stage's section (named key by key, never a whole section)
CROSS_SECTION = {"compress": {"predict.target_precision", "split.segment_columns"}}


def test_stage_params_sections_exist(dvc_doc):
    fields = set(Params.model_fields)
    for name, stage in dvc_doc["stages"].items():
        for entry in stage.get("params", []):
            keys = [entry] if isinstance(entry, str) else [k for v in entry.values() for k in v]
            for key in keys:
                assert key.split(".")[0] in fields, f"stage {name}: params {key!r} is not a Params section"
                if key.split(".")[0] not in (name, "seed"):
                    assert key in CROSS_SECTION.get(name, set()), f"stage {name} depends on another section: {key}"


def test_stage_params_are_own_section(dvc_doc):
    """quality.* changes rerun quality and what follows, never ingest or anonymize."""
    for name, stage in dvc_doc["stages"].items():
        keys = {e for e in stage.get("params", []) if isinstance(e, str)}
        foreign = {k for k in keys if k.split(".")[0] not in {name, "seed"}}
        assert foreign <= CROSS_SECTION.get(name, set()), f"{name}: {sorted(foreign)}"


def test_compress_declares_the_router_target():
    """compress chooses the router band for predict.target_precision: a change must rerun it."""
    import re

    src = (ROOT / "pipeline" / "train" / "compress.py").read_text(encoding="utf-8")
    read = {f"predict.{m}" for m in re.findall(r"params\.predict\.(\w+)", src)}
    assert read <= CROSS_SECTION["compress"], read


def test_cli_commands_and_options_exist(index):
    import typer.main

    from pipeline.cli import app

    group = typer.main.get_command(app)
    for name, stage in index.items():
        argv = shlex.split(stage["cmd"])
        assert argv[0] == "fraudslm", f"{name}: stages call the CLI"
        cmd = group.commands.get(argv[1])
        assert cmd is not None, f"{name}: no CLI command {argv[1]!r}"
        opts = {o for p in cmd.params for o in p.opts}
        for flag in (a for a in argv[2:] if a.startswith("--")):
            assert flag in opts, f"{name}: {argv[1]} has no option {flag}"


def test_every_stage_writes_ledger_and_git_tracked_metrics(index, params_doc):
    for name, stage in index.items():
        argv = shlex.split(stage["cmd"])
        out_dir = argv[argv.index("--out") + 1]
        metrics = [p for p, o in stage["outs"].items() if o.metric]
        assert f"{out_dir}/ledger.json" in stage["outs"], f"{name}: ledger.json not declared"
        # DVC shows the small headline file; the full metrics.json is a git-tracked output beside it
        assert metrics == [f"{out_dir}/headline.json"], f"{name}: metrics {metrics}"
        for f in ("metrics.json", "headline.json"):
            assert not stage["outs"][f"{out_dir}/{f}"].use_cache, f"{name}: {f} must be cache: false"
        assert f"{out_dir}/timings.json" not in stage["outs"], f"{name}: timings.json is volatile: not an output"


def test_metrics_in_git_data_ignored(index):
    """metrics.json (cache: false) are committed with dvc.lock; every cached output stays out of git."""
    for name, stage in index.items():
        for path, out in stage["outs"].items():
            ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0
            assert ignored == out.use_cache, f"{name}: {path} {'ignored' if ignored else 'not ignored'} by git"


def test_remotes_keep_raw_pii_apart(index, params_doc):
    """Outputs holding raw PII go to the restricted remote (also the default), all others to shared."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as r:
        remotes = r.config["remote"]
        assert {"restricted", "shared"} <= set(remotes)
        assert r.config["core"].get("remote") == "restricted", "default remote must be restricted (fail closed)"
        assert remotes["restricted"]["url"] != remotes["shared"]["url"]
    restricted = tuple(params_doc["paths"][k] for k in RESTRICTED_PATH_KEYS)
    for name, stage in index.items():
        for path, out in stage["outs"].items():
            if not out.use_cache:
                continue
            want = "restricted" if path.startswith(restricted) else "shared"
            assert out.remote == want, f"{name}: {path} -> remote {out.remote!r}, want {want!r}"
    for key in ("raw", "ground_truth"):
        dvc_file = ROOT / f"{params_doc['paths'][key]}.dvc"
        if dvc_file.exists():
            outs = yaml.safe_load(dvc_file.read_text())["outs"]
            assert all(o.get("remote") == "restricted" for o in outs), dvc_file


def _contract_outputs() -> dict[str, set[str]]:
    """{folder: {file or subfolder/}} named in docs/data_contracts.md, from the sections whose heading names a
    data/ path."""
    result: dict[str, set[str]] = {}
    sections = re.split(r"^## ", CONTRACTS.read_text(encoding="utf-8"), flags=re.M)[1:]
    for section in sections:
        heading, _, body = section.partition("\n")
        paths = [t for t in re.findall(r"`([^`]+)`", heading) if t.startswith("data/")]
        if not paths:
            continue
        head = paths[0].rstrip("/")
        folder = head if not Path(head).suffix else str(Path(head).parent)
        names = set()
        if Path(head).suffix:
            names.add(Path(head).name)
        for token in re.findall(r"`([^`\s]+)`", body):
            if re.fullmatch(r"[\w.-]+\.(parquet|json|csv|md|html|sig|png)", token) or re.fullmatch(r"[\w-]+/", token):
                names.add(token)
        result[folder] = names
    return result


def test_contract_outputs_are_declared(index, params_doc):
    contract = _contract_outputs()
    assert params_doc["paths"]["ingested"] in contract and params_doc["paths"]["anonymized"] in contract
    outs = {p for s in index.values() for p in s["outs"]}
    deps = {p for s in index.values() for p in s["deps"]}
    missing = []
    for folder, names in contract.items():
        if folder in (params_doc["paths"]["raw"], params_doc["paths"]["ground_truth"]):
            assert folder in deps, f"{folder}: inputs must be a stage dependency (tracked by {folder}.dvc)"
            continue
        for name in sorted(names):
            path = f"{folder}/{name.rstrip('/')}"
            if not any(path == o or path.startswith(o + "/") for o in outs):
                missing.append(path)
    assert not missing, f"in docs/data_contracts.md but not declared in dvc.yaml: {missing}"


def test_code_dependencies_exist(index):
    for name, stage in index.items():
        for dep in stage["deps"]:
            if dep.startswith(("pipeline", "schemas")):
                assert (ROOT / dep).exists(), f"{name}: code dependency {dep} missing"


def test_stage_order_comes_from_dvc():
    from pipeline.dvcops import stage_order

    order = stage_order(ROOT)
    assert order[:2] == ["ingest", "anonymize"] and order[-1] == "report"
    assert order.index("quality") < order.index("split") < order.index("train") < order.index("compress")


def test_plots_registered(dvc_doc, params_doc):
    plots = [p if isinstance(p, str) else next(iter(p)) for p in dvc_doc.get("plots", [])]
    for key in ("quality", "splits", "lora", "compressed"):
        assert any(p.startswith(f"${{paths.{key}}}/plots") for p in plots), key
    outs = {p for s in dvc_doc["stages"].values() for o in s.get("outs", []) for p in ([o] if isinstance(o, str) else o)}
    for p in plots:  # every plot lives in a declared plots/ output folder
        assert p.split("/plots")[0] + "/plots" in outs, p


def test_prefect_yaml_matches_flows():
    from flows.deployments import build_deployments, load_flow, load_specs

    specs = load_specs()
    text = (ROOT / "prefect.yaml").read_text(encoding="utf-8")
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert "FRAUDSLM_PSEUDONYM_KEY" not in body and "prefect.blocks.secret" not in body, "no secret in prefect.yaml"
    names = {s["name"] for s in specs}
    assert {"nightly", "ingest-watch"} <= names
    for spec in specs:
        fn = load_flow(spec["entrypoint"])
        accepted = set(inspect.signature(fn.fn).parameters)
        assert set(spec.get("parameters") or {}) <= accepted, spec["name"]
    nightly = next(s for s in specs if s["name"] == "nightly")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *" and nightly["schedules"][0]["timezone"]
    deployments = build_deployments()
    assert {d.name for d in deployments} == names


# ---------------------------------------------------------------------------------------------------------------
# typed stage contracts (pipeline/contracts.py)


def test_table_of_stages_matches_dvc_and_params(dvc_doc, params_doc):
    from pipeline.contracts import STAGES

    assert [s.name for s in STAGES] == [n for n in dvc_doc["stages"] if n in {s.name for s in STAGES}]
    assert set(dvc_doc["stages"]) == {s.name for s in STAGES}
    for s in STAGES:
        assert s.folder in params_doc["paths"], s
        cmd = dvc_doc["stages"][s.name]["cmd"]
        assert f"--out ${{paths.{s.folder}}}" in cmd, (s.name, cmd)
        assert s.restricted == (s.folder in RESTRICTED_PATH_KEYS), s


def test_metrics_round_trip_keeps_the_producer_keys_and_moves_timings(tmp_path):
    from pipeline.contracts import TIMINGS_FILE, CompressMetrics, read_metrics, write_metrics
    from pipeline.io import read_json

    doc = {"variants": [{"name": "fp32", "kind": "fp32", "size_mb": 90.0, "pr_auc": 0.5, "latency_p50_ms": 9.1,
                         "build_s": 0.2, "extra_key": 1},
                        {"name": "tfidf", "kind": "baseline", "size_mb": 1.0, "pr_auc": 0.6, "latency_p50_ms": 0.3}],
           "chosen": "fp32", "chosen_rule": {"chosen": "fp32", "floor_met": False, "baseline_pr_auc": 0.6},
           "stage_time_s": 12.5, "something_new": {"a": 1}}
    full = write_metrics(tmp_path, CompressMetrics.model_validate(doc))
    assert full == doc  # exactly the producer's keys, extras included, nothing added
    stable = read_json(tmp_path / "metrics.json")
    assert "stage_time_s" not in stable and "latency_p50_ms" not in stable["variants"][0]
    assert stable["variants"][0]["extra_key"] == 1 and stable["something_new"] == {"a": 1}
    timings = read_json(tmp_path / TIMINGS_FILE)
    assert timings == {"stage_time_s": 12.5, "variants": {"fp32": {"latency_p50_ms": 9.1, "build_s": 0.2},
                                                          "tfidf": {"latency_p50_ms": 0.3}}}
    back = read_metrics(tmp_path, CompressMetrics)
    assert back.model_dump(mode="json", exclude_unset=True) == doc
    assert read_json(tmp_path / "headline.json") == {"pr_auc": 0.5, "chosen": "fp32", "floor_met": False}


def test_contract_violation_is_one_line_naming_file_and_key(tmp_path):
    from pipeline.contracts import QualityMetrics, read_metrics
    from pipeline.errors import ConfigError
    from pipeline.io import write_json

    write_json(tmp_path / "metrics.json", {"records": 3, "kept": 3, "label_issues": {"found": 1}})
    with pytest.raises(ConfigError) as exc:
        read_metrics(tmp_path, QualityMetrics)
    msg = str(exc.value)
    assert "\n" not in msg and "metrics.json" in msg and "label_issues.count" in msg


def test_dvc_metrics_show_stays_under_200_characters(tmp_path, params_doc):
    """`dvc metrics show` prints one column per distinct headline name over all stages: with the widest values a
    run can give, every line stays under 200 characters (issue 24)."""
    import json

    from pipeline.contracts import STAGES

    sample = {"chosen": "baseline_tfidf_lr", "overall": "attention", "floor_met": False}
    stages = {}
    for s in STAGES:
        folder = params_doc["paths"][s.folder]
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "headline.json").write_text(json.dumps(
            {n: sample.get(n, 123456 if n not in ("pr_auc", "leaks_10k") else 0.1234) for n in s.metrics.HEADLINE}))
        stages[s.name] = {"cmd": "true", "metrics": [{f"{folder}/headline.json": {"cache": False}}]}
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc = [sys.executable, "-m", "dvc"]
    subprocess.run(dvc + ["init", "-q"], cwd=tmp_path, check=True)
    out = subprocess.run(dvc + ["metrics", "show"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert len(lines) == 1 + len(STAGES) and "baseline_tfidf_lr" in out
    assert max(len(line) for line in lines) < 200, max(len(line) for line in lines)


def test_every_ledger_validates_against_its_model():
    from pipeline.contracts import STAGE_BY_NAME
    from pipeline.ledger import Ledger

    for name, stage in STAGE_BY_NAME.items():
        led = Ledger(name)
        led.read("s", 3)
        led.accept("s", 2)
        led.quarantine("s", "bad_row")
        doc = stage.ledger.model_validate(led.to_dict()).model_dump(mode="json", exclude_unset=True)
        assert doc == led.to_dict() and stage.ledger.model_validate(doc).sources["s"].balanced
