"""Gather the facts of one run from the stage outputs (ledgers, metrics, count-only reads) into report.json.

Privacy rules of this module (the report is a *shared* artifact):

* the restricted zone (raw sources, ground truth, `02_ingested`) is never opened, except the ingest stage's
  `ledger.json` and `metrics.json`, which hold counts; files there are neither read nor hashed (their versions come
  from dvc.lock when it records them);
* from the shared stage outputs only counts are taken: `entities.parquet` (positions and types, never values), the
  `source` / `label` / `group_id` columns of the record tables (group ids are keyed pseudonyms, and only their
  overlap *count* leaves this module), row counts from Parquet metadata;
* of every stage's metrics only numbers, booleans and short identifier-like strings are copied.

A missing stage or file is "not run" with a note, never an exception: the report is most useful exactly when a
run went wrong.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Optional

from pydantic import BaseModel

from pipeline.config import REPO_ROOT, Params, resolve_path
from pipeline.contracts import (
    LEDGER_FILE,
    LEDGER_KEYS,
    METRICS_FILE,
    STAGES as CONTRACT_STAGES,
    TIMINGS_FILE,
    AnonymizeMetrics,
    CompressMetrics,
    QualityMetrics,
    SplitMetrics,
    TrainMetrics,
    read_metrics,
    validate_metrics,
)
from pipeline.errors import ConfigError
from pipeline.io import read_json, sha256_file
from pipeline.provenance import library_versions
from pipeline.report.texts import NOT_RUN, SECTIONS

SCHEMA_VERSION = "1.1"
# params.yaml `paths` key -> the stage that writes it, in pipeline order (from the one table in pipeline.contracts)
STAGES: dict[str, str] = {s.folder: s.name for s in CONTRACT_STAGES if s.name != "report"}
METRICS_MODELS = {s.folder: s.metrics for s in CONTRACT_STAGES}
LEDGER_MODELS = {s.folder: s.ledger for s in CONTRACT_STAGES}
RESTRICTED = frozenset(s.folder for s in CONTRACT_STAGES if s.restricted)  # only their counts files are read
RESTRICTED_READABLE = (LEDGER_FILE, METRICS_FILE, TIMINGS_FILE)
SPLIT_NAMES = ("train", "validation", "test")
_SAFE_STR = re.compile(r"^[A-Za-z0-9_.:/+\- ]{0,64}$")
MAX_STAGE_METRICS = 80


# --------------------------------------------------------------------------------------------- small helpers


def clean_number(x: Any) -> Any:
    """Floats rounded to 6 decimals (readable, and no long digit runs a PII scan could mistake for a number)."""
    if isinstance(x, bool) or x is None or isinstance(x, int):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return round(x, 6)
    if hasattr(x, "item"):
        return clean_number(x.item())
    return x


def safe_scalar(x: Any) -> tuple[bool, Any]:
    """(keep, value) for a metrics leaf: numbers, booleans, None and short identifier-like strings only."""
    if x is None or isinstance(x, (bool, int, float)):
        return True, clean_number(x)
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        try:
            return safe_scalar(x.item())
        except (TypeError, ValueError):
            return False, None
    if isinstance(x, str) and _SAFE_STR.match(x) and not any(ch.isdigit() for ch in x[:1]):
        return True, x
    return False, None


def numeric_leaves(obj: Any, prefix: str = "", out: Optional[dict] = None, limit: int = MAX_STAGE_METRICS) -> dict:
    """Flatten a metrics document to {dotted.key: number|bool} (strings and long lists left out)."""
    out = {} if out is None else out
    if len(out) >= limit:
        return out
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            numeric_leaves(obj[k], f"{prefix}.{k}" if prefix else str(k), out, limit)
    elif isinstance(obj, (list, tuple)) and len(obj) <= 10:
        for i, v in enumerate(obj):
            numeric_leaves(v, f"{prefix}[{i}]", out, limit)
    elif isinstance(obj, (bool, int, float)) and not isinstance(obj, str):
        v = clean_number(obj)
        if v is not None and len(out) < limit:
            out[prefix] = v
    return out


def count_dict(d: Any) -> Optional[dict[str, int]]:
    """{str: int} with keys sorted, or None when `d` is not such a mapping."""
    if not isinstance(d, dict) or not d:
        return None
    out = {}
    for k, v in d.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            return None
        out[str(k)] = int(v)
    return dict(sorted(out.items()))


def prevalence(fraud: int, legit: int) -> Optional[float]:
    n = fraud + legit
    return clean_number(fraud / n) if n else None


def display_path(p: Path) -> str:
    """A path as the reviewer knows it: relative to the working folder when below it."""
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.as_posix()


def utc_now() -> str:
    """Report time (the only timestamp the pipeline writes); SOURCE_DATE_EPOCH pins it for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.strip().isdigit():
        t = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
    else:
        t = datetime.now(timezone.utc).replace(microsecond=0)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def git_version(root: Path = REPO_ROOT) -> dict[str, Any]:
    """{"git_sha", "dirty"}; nulls outside a git checkout (pipeline.provenance.git_info)."""
    from pipeline.provenance import git_info

    g = git_info(root)
    return {"git_sha": g["git_sha"], "dirty": g["git_dirty"]}


# ------------------------------------------------------------------------------------------- stage folders


@dataclass
class StageDir:
    key: str  # params.yaml paths key
    stage: str
    path: Path
    ledger: Optional[dict] = None
    metrics: Optional[dict] = None  # the validated contract model, dumped (defaults filled in)
    model: Optional[BaseModel] = None  # the stage's metrics through its contract (pipeline.contracts)
    notes: list[str] = field(default_factory=list)

    @property
    def restricted(self) -> bool:
        return self.key in RESTRICTED

    @property
    def ran(self) -> bool:
        return self.ledger is not None or self.metrics is not None

    def file(self, name: str) -> Optional[Path]:
        """A file of this stage that the report may read (None when absent or restricted)."""
        if self.restricted and name not in RESTRICTED_READABLE:
            return None
        p = self.path / name
        return p if p.is_file() else None

    def json(self, name: str) -> Optional[dict]:
        p = self.file(name)
        if p is None:
            return None
        try:
            data = read_json(p)
        except (OSError, ValueError):
            self.notes.append(f"{display_path(p)}: not valid JSON; ignored")
            return None
        if not isinstance(data, dict):
            self.notes.append(f"{display_path(p)}: not a JSON object; ignored")
            return None
        return data

    def parquet_columns(self, name: str, columns: list[str], optional: Iterable[str] = ()) -> Optional[Any]:
        """Only the named columns of a shared Parquet file (pandas DataFrame), None when absent or unreadable."""
        p = self.file(name)
        if p is None:
            return None
        try:
            import pyarrow.parquet as pq

            have = set(pq.ParquetFile(p).schema_arrow.names)
            missing = [c for c in columns if c not in have]
            if missing:
                self.notes.append(f"{display_path(p)}: column(s) {', '.join(missing)} missing; not read")
                return None
            cols = list(columns) + [c for c in optional if c in have and c not in columns]
            return pq.read_table(p, columns=cols).to_pandas()
        except Exception as exc:  # noqa: BLE001 - unreadable file: a note, the report goes on
            self.notes.append(f"{display_path(p)}: unreadable Parquet ({type(exc).__name__}); not counted")
            return None

    def parquet_rows(self, name: str) -> Optional[int]:
        p = self.file(name)
        if p is None:
            return None
        try:
            import pyarrow.parquet as pq

            return int(pq.ParquetFile(p).metadata.num_rows)
        except Exception:  # noqa: BLE001
            self.notes.append(f"{display_path(p)}: unreadable Parquet metadata")
            return None


def load_stages(params: Params) -> dict[str, StageDir]:
    """Every stage folder, its ledger and metrics read through the stage's contract model; a file that breaks its
    contract is a note (the report is most useful when a run went wrong), never a guess at other spellings."""
    out = {}
    for key, stage in STAGES.items():
        sd = StageDir(key, stage, resolve_path(getattr(params.paths, key)))
        led = sd.json(LEDGER_FILE)
        if led is not None:
            try:
                sd.ledger = validate_metrics(LEDGER_MODELS[key], led, display_path(sd.path / LEDGER_FILE)) \
                    .model_dump(mode="json")
            except ConfigError as exc:
                sd.notes.append(f"{exc}; ignored")
        if sd.json(METRICS_FILE) is not None:  # a file that is not JSON is a note from sd.json
            try:
                sd.model = read_metrics(sd.path, METRICS_MODELS[key], timings=False)  # timings vary per run
                sd.metrics = sd.model.model_dump(mode="json")
            except (ConfigError, OSError, ValueError) as exc:
                sd.notes.append(f"{str(exc).replace(str(sd.path), display_path(sd.path))}; ignored")
        out[key] = sd
    return out


# ---------------------------------------------------------------------------------------- data versions


def _dvc_lock_hashes(root: Path) -> dict[str, dict[str, Any]]:
    """{out path: {"md5", "size"}} from dvc.lock (how restricted files are versioned without reading them)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    try:
        import yaml

        data = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    except Exception:  # noqa: BLE001
        return {}
    out: dict[str, dict[str, Any]] = {}
    for stage in (data.get("stages") or {}).values():
        for o in (stage or {}).get("outs") or []:
            if isinstance(o, dict) and "path" in o:
                out[str(o["path"])] = {"md5": o.get("md5"), "size": o.get("size")}
    return out


def tree_info(p: Path) -> tuple[int, int]:
    """(files, bytes) of a folder, hidden files left out like sha256_tree does."""
    files = [x for x in p.rglob("*") if x.is_file() and not x.name.startswith(".")]
    return len(files), sum(x.stat().st_size for x in files)


# rewritten on every run, so never a data version (and never a DVC output): timings, the compression table that
# renders them, train's resume checkpoints (their state holds the elapsed time)
VOLATILE_ARTIFACTS = frozenset({TIMINGS_FILE, "compression_table.md", "checkpoints"})


def describe_artifacts(stages: dict[str, StageDir]) -> list[dict[str, Any]]:
    """Every file / folder of the stage outputs with its SHA-256 (restricted ones by name and dvc.lock only)."""
    from pipeline.io import sha256_tree

    lock = _dvc_lock_hashes(Path.cwd())
    out: list[dict[str, Any]] = []
    for key, sd in stages.items():
        if not sd.path.is_dir():
            continue
        for child in sorted(sd.path.iterdir(), key=lambda x: x.name):
            if child.name.startswith(".") or child.name in VOLATILE_ARTIFACTS:  # not a data version
                continue
            entry: dict[str, Any] = {"stage": sd.stage, "path": display_path(child)}
            if sd.restricted and child.name not in RESTRICTED_READABLE:
                entry.update(kind="restricted", sha256=None, bytes=None)
                dvc = lock.get(entry["path"])
                if dvc and dvc.get("md5"):
                    entry["dvc_md5"] = dvc["md5"]
                out.append(entry)
                continue
            if child.is_dir():
                n, size = tree_info(child)
                entry.update(kind="dir", sha256=sha256_tree(child), bytes=size, files=n)
            elif child.is_file():
                entry.update(kind="file", sha256=sha256_file(child), bytes=child.stat().st_size)
            else:
                continue
            entry["_abs"] = child
            out.append(entry)
    return out


# --------------------------------------------------------------------------------------------- sections


def _section(name: str, status: str, **facts: Any) -> dict[str, Any]:
    t = SECTIONS[name]
    return {
        "title": t["title"],
        "status": status,
        "guarantee": t["guarantee"],
        "how_checked": t["how_checked"],
        "references": t["references"],
        **facts,
    }


class Checks:
    """Reconciliation checks: each a plain statement with passed true/false (or null when not checkable)."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, section: str, cid: str, passed: Optional[bool], detail: str, severity: str = "error",
            figure: Any = None, target: Optional[str] = None) -> bool:
        """A check; `figure` (the measured value) and `target` (the declared target, e.g. ">= 0.95") make a target
        check: a missed target is a WARN (severity warning) or FAIL (error), never hidden."""
        item = {"id": cid, "section": section, "passed": passed, "severity": severity, "detail": detail}
        if figure is not None or target is not None:
            item.update(figure=clean_number(figure) if not isinstance(figure, str) else figure, target=target)
        self.items.append(item)
        return bool(passed)

    def status(self, section: str, ran: bool = True) -> str:
        if not ran:
            return "not_run"
        mine = [c for c in self.items if c["section"] == section]
        if any(c["passed"] is False and c["severity"] == "error" for c in mine):
            return "failed"
        if any(c["passed"] is False for c in mine):
            return "warning"
        return "ok"


def _not_run(sd: StageDir, what: str = "ledger.json or metrics.json") -> str:
    return NOT_RUN.format(path=display_path(sd.path), what=what)


def _ledger_sources(ledger: Optional[dict]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, s in sorted(((ledger or {}).get("sources") or {}).items()):
        if not isinstance(s, dict):
            continue
        row: dict[str, Any] = {k: int(s.get(k) or 0) for k in LEDGER_KEYS}
        row["reasons"] = count_dict(s.get("reasons")) or {}
        row["balanced"] = row["read"] == sum(row[k] for k in LEDGER_KEYS[1:])
        if isinstance(s.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", s["sha256"]):
            row["sha256"] = s["sha256"]
        if isinstance(s.get("bytes"), int):
            row["bytes"] = s["bytes"]
        out[str(name)] = row
    return out


def _totals(rows: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {k: sum(r[k] for r in rows.values()) for k in LEDGER_KEYS}


def sources_section(stages: dict[str, StageDir], checks: Checks, split_counts: dict[str, dict[str, int]]) -> dict:
    ing = stages["ingested"]
    if ing.ledger is None:
        return _section("sources", "not_run", note=_not_run(ing, "ledger.json"), notes=ing.notes, sources={},
                        totals=None, balanced=None, flow={})
    rows = _ledger_sources(ing.ledger)
    balanced = all(r["balanced"] for r in rows.values())
    bad = [n for n, r in rows.items() if not r["balanced"]]
    checks.add("sources", "ingest.ledger_balanced", balanced,
               "every source: read = accepted + quarantined + duplicates + dropped"
               + (f" (not balanced: {', '.join(bad)})" if bad else ""))
    if "balanced" in ing.ledger and bool(ing.ledger["balanced"]) != balanced:
        checks.add("sources", "ingest.ledger_flag_consistent", False,
                   "the ledger's own 'balanced' flag disagrees with its counts")
    # follow every source through the later stages (accepted at each stage, records in the splits)
    flow: dict[str, dict[str, Optional[int]]] = {}
    later = {k: _ledger_sources(stages[k].ledger) for k in ("anonymized", "quality", "splits")}
    for name in sorted(set(rows) | {s for v in later.values() for s in v}):
        flow[name] = {
            "ingest": rows.get(name, {}).get("accepted"),
            "anonymize": later["anonymized"].get(name, {}).get("accepted"),
            "quality": later["quality"].get(name, {}).get("accepted"),
            "splits": split_counts.get(name, {}).get("total") if split_counts else None,
        }
    for prev, cur, key in (("ingest", "anonymize", "anonymized"), ("anonymize", "quality", "quality"),
                           ("quality", "split", "splits")):
        if not later[key]:
            continue
        prev_rows = rows if prev == "ingest" else later["anonymized" if prev == "anonymize" else "quality"]
        if not prev_rows:
            continue
        diffs = [n for n in sorted(set(prev_rows) | set(later[key]))
                 if prev_rows.get(n, {}).get("accepted", 0) != later[key].get(n, {}).get("read", 0)]
        checks.add("sources", f"flow.{cur}_read_eq_{prev}_accepted", not diffs,
                   f"per source, the {cur} stage read exactly what the {prev} stage accepted"
                   + (f" (differs: {', '.join(diffs)})" if diffs else ""))
    return _section("sources", checks.status("sources"), sources=rows, totals=_totals(rows), balanced=balanced,
                    flow=flow, stage_metrics=numeric_leaves(ing.metrics or {}), notes=ing.notes)


def _operator_name(op: Any) -> str:
    if isinstance(op, str):
        return op
    name = getattr(op, "operator", None) or (op.get("operator") if isinstance(op, dict) else None) or str(op)
    extras = []
    for k in ("keep_last", "masking_char"):
        v = getattr(op, k, None) if not isinstance(op, dict) else op.get(k)
        if v is not None and name == "mask":
            extras.append(f"{k}={v}")
    return f"{name} ({', '.join(extras)})" if extras else str(name)


def _entity_counts(anon: StageDir) -> dict[str, Any]:
    """Entity counts by type / source / field and the operators actually applied per type: from
    entities.parquet (types, positions and operators; never values) when present, else from the stage metrics."""
    ents = anon.parquet_columns("entities.parquet", ["record_id", "type"], optional=["field", "operator"])
    if ents is not None:
        recs = anon.parquet_columns("records.parquet", ["record_id", "source"])
        types = ents["type"].astype(str)
        by_source: dict[str, Counter] = {}
        if recs is not None:
            src = dict(zip(recs["record_id"].astype(str), recs["source"].astype(str)))
            for rid, t in zip(ents["record_id"].astype(str), types):
                by_source.setdefault(src.get(rid, "(not in records: quarantined)"), Counter())[t] += 1
        applied: dict[str, Counter] = {}
        if "operator" in ents.columns:
            for t, op in zip(types, ents["operator"].astype(str)):
                applied.setdefault(t, Counter())[op] += 1
        return {
            "by_type": dict(sorted(Counter(types).items())),
            "by_source": {s: dict(sorted(c.items())) for s, c in sorted(by_source.items())},
            "by_field": dict(sorted(Counter(ents["field"].astype(str)).items())) if "field" in ents.columns else {},
            "operators_by_type": {t: dict(sorted(c.items())) for t, c in sorted(applied.items())},
            "computed_from": "entities.parquet",
        }
    m: Optional[AnonymizeMetrics] = anon.model  # type: ignore[assignment]
    by_type = count_dict(m.entities.by_type) if m else None
    by_source = {str(s): count_dict(v) or {} for s, v in sorted(m.entities.by_source.items())} if m else {}
    return {"by_type": by_type or {}, "by_source": by_source, "by_field": (count_dict(m.entities.by_field) if m else None)
            or {}, "operators_by_type": {}, "computed_from": "metrics.json" if by_type else "none"}


def _per_1000(recall: Optional[float]) -> Optional[int]:
    return None if recall is None else int(round((1 - recall) * 1000))


def _residual_risk(am: Optional[AnonymizeMetrics], params: Params, checks: Checks) -> Optional[dict[str, Any]]:
    """The anonymize stage's measured residual risk (per entity type recall with its 95% lower bound on the shipped
    evaluation set, expected leaks, which types the gate can see, re-identification k), checked against the declared
    targets (`anonymize.recall_targets`, `anonymize.k_target`): a lower bound under its target is a warning."""
    if am is None or (am.residual_risk is None and am.reidentification is None):
        return None
    rr, reid = am.residual_risk, am.reidentification
    targets = dict(getattr(params.anonymize, "recall_targets", None) or {})
    per_type = {}
    for t, r in sorted(rr.per_type.items()) if rr else ():
        target = r.target if r.target is not None else targets.get(t)
        per_type[t] = {"recall": clean_number(r.recall), "ci_low": clean_number(r.ci_low), "n": r.n,
                       "target": target, "gate_sees": r.gate_sees,
                       # plain words: of every 1,000 values of this type, about N may remain (at the lower bound)
                       "may_remain_per_1000": _per_1000(r.ci_low), "may_remain_per_1000_at_recall": _per_1000(r.recall)}
    out: dict[str, Any] = {
        "per_type": per_type,
        "expected_leaks_per_10k_records": clean_number(rr.expected_leaks_per_10k_records) if rr else None,
        "expected_leaks_per_10k_records_at_ci_low": clean_number(rr.expected_leaks_per_10k_records_at_ci_low)
        if rr else None,
        "gate_visible_types": list(rr.gate_visible_types) if rr else [],
        "gate_invisible_types": list(rr.gate_invisible_types) if rr else [],
        "eval_set": dict(rr.eval_set) if rr else {},
        "this_run_ground_truth": rr.this_run_ground_truth if rr else None,
        "reidentification": {"min_k": reid.min_k, "share_below_k": clean_number(reid.share_below_k),
                             "k_target": reid.k_target, "unit": reid.unit,
                             "quasi_identifiers": list(reid.quasi_identifiers),
                             "driving_columns": list(reid.driving_columns), "policy": dict(reid.policy)}
        if reid else None,
    }
    for t, r in per_type.items():
        target = r["target"]
        if not isinstance(target, (int, float)) or isinstance(target, bool) or r["ci_low"] is None:
            continue
        checks.add("pii", f"pii.recall_target_{t.lower()}", r["ci_low"] >= target,
                   f"{t}: recall lower bound {r['ci_low']} (n={r['n']}) against the target {target}; of every 1,000 "
                   f"such values about {r['may_remain_per_1000_at_recall']} may remain (at most about "
                   f"{r['may_remain_per_1000']} at the 95% bound)"
                   + ("" if r["gate_sees"] else " and the leakage gate cannot see this type"),
                   severity="warning", figure=r["ci_low"], target=f">= {target}")
    if reid is not None and reid.share_below_k is not None and reid.k_target:
        checks.add("pii", "pii.reidentification_k", reid.share_below_k == 0,
                   f"{clean_number(reid.share_below_k * 100)}% of records share their quasi-identifiers with fewer "
                   f"than {reid.k_target} people (smallest group {reid.min_k})"
                   + (f"; driven by {', '.join(reid.driving_columns)}" if reid.driving_columns else ""),
                   severity="warning", figure=clean_number(reid.share_below_k), target="0 below k")
    return out


def pii_section(stages: dict[str, StageDir], params: Params, checks: Checks) -> dict:
    anon = stages["anonymized"]
    ap = params.anonymize
    ops = {t: _operator_name(o) for t, o in sorted(ap.operators.items())}
    policy = {"default_operator": ap.default_operator, "operators": ops, "columns": dict(sorted(ap.columns.items())),
              "score_threshold": ap.score_threshold, "gate_min_score": ap.gate.min_score,
              "gate_fail_on_residual": ap.gate.fail_on_residual}
    if not anon.ran and anon.file("gate.json") is None:
        return _section("pii", "not_run", note=_not_run(anon), notes=anon.notes, policy=policy, entities=None,
                        gate=None, key_fingerprint=None, sources={})
    entities = _entity_counts(anon)
    by_type, computed_from = entities["by_type"], entities["computed_from"]
    entities["total"] = sum(by_type.values()) if by_type else None
    am: Optional[AnonymizeMetrics] = anon.model  # type: ignore[assignment]
    m = anon.metrics or {}
    # cross-check the recount with what the stage reported
    reported = count_dict(am.entities.by_type) if am else None
    if computed_from == "entities.parquet" and reported is not None:
        rep_src = am.entities.by_source
        same = reported == by_type and (not rep_src or not entities["by_source"]
                                        or {str(k): count_dict(v) or {} for k, v in rep_src.items()}
                                        == entities["by_source"])
        checks.add("pii", "pii.entity_counts_match_metrics", same,
                   "entity counts per type and source, recounted from entities.parquet, equal the anonymize "
                   "stage's metrics")
    elif computed_from == "none":
        checks.add("pii", "pii.entity_counts_available", False,
                   "no entity counts: entities.parquet and metrics counts are both missing", severity="warning")
    # operator per type: what entities.parquet records as applied, else the configured one (default for the rest)
    applied = {}
    for t in sorted(set(by_type) | set(ops)):
        seen = entities["operators_by_type"].get(t)
        applied[t] = ", ".join(f"{op} ({n})" if len(seen) > 1 else op for op, n in seen.items()) if seen \
            else ops.get(t, ap.default_operator)
    # the leakage gate
    g = anon.json("gate.json")
    gate = None
    if g is None:
        checks.add("pii", "pii.gate_result_present", False, "gate.json is missing: the leakage gate result is unknown")
    else:
        gate = {
            "passed": bool(g.get("passed")) if isinstance(g.get("passed"), bool) else None,
            "residual": count_dict(g.get("residual")) or {},
            "residual_total": sum((count_dict(g.get("residual")) or {}).values()),
            "suspects": count_dict(g.get("suspects")) or {},
            "checked_records": g.get("checked_records") if isinstance(g.get("checked_records"), int) else None,
            "checked_cells": g.get("checked_cells") if isinstance(g.get("checked_cells"), int) else None,
            "original_values_checked": g.get("original_values_checked")
            if isinstance(g.get("original_values_checked"), int) else None,
            "canaries_checked": g.get("canaries_checked") if isinstance(g.get("canaries_checked"), int) else None,
            "min_score": clean_number(g.get("min_score")) if isinstance(g.get("min_score"), (int, float)) else None,
        }
        checks.add("pii", "pii.leakage_gate_passed", gate["passed"] is True and gate["residual_total"] == 0,
                   f"leakage gate passed with {gate['residual_total']} residual finding(s)")
        if gate["canaries_checked"] == 0:
            checks.add("pii", "pii.canaries_checked", False,
                       "the gate checked no canaries (no ground truth given to anonymize)", severity="warning")
    fp = am.key_fingerprint if am else None
    fp = fp if isinstance(fp, str) and re.fullmatch(r"[0-9a-f]{8,64}", fp) else None
    env_match = None
    if fp:
        try:
            from pipeline.anonymize.pseudonym import KEY_ENV, key_fingerprint

            raw = os.environ.get(KEY_ENV)
            env_match = (key_fingerprint(raw.encode("utf-8")) == fp) if raw else None
        except Exception:  # noqa: BLE001 - pseudonym module unavailable: nothing to compare
            env_match = None
    risk = _residual_risk(am, params, checks)
    return _section("pii", checks.status("pii"), policy=policy, operators_applied=applied, entities=entities,
                    gate=gate, key_fingerprint=fp, key_matches_environment=env_match,
                    records_in=am.records_in if am else None, records_out=am.records_out if am else None,
                    quarantined=am.quarantined if am else None, residual_risk=risk,
                    sources=_ledger_sources(anon.ledger), stage_metrics=numeric_leaves(m), notes=anon.notes)


def _label_balance(df: Any, by: str = "source") -> dict[str, dict[str, Any]]:
    """{group: {n, fraud, legit, unlabeled, prevalence}} from a frame with `label` and `by` columns."""
    out: dict[str, dict[str, Any]] = {}
    if df is None:
        return out
    import pandas as pd

    labels = pd.to_numeric(df["label"], errors="coerce")
    keys = df[by].astype(str) if by in df.columns else pd.Series(["all"] * len(df))
    for name in sorted(set(keys)):
        sel = labels[keys == name]
        fraud, legit = int((sel == 1).sum()), int((sel == 0).sum())
        out[name] = {"n": int(len(sel)), "fraud": fraud, "legit": legit, "unlabeled": int(sel.isna().sum()),
                     "prevalence": prevalence(fraud, legit)}
    return out


def _queue_examples(q: StageDir, n: int) -> list[dict[str, Any]]:
    """Up to n anonymized reviewer-queue texts (off by default); every value is HTML-escaped when rendered."""
    if n <= 0:
        return []
    df = q.parquet_columns("review_queue.parquet", ["record_id", "text"],
                           optional=["source", "label", "given_label", "suggested_label", "label_quality", "reason"])
    if df is None:
        return []
    df = df.sort_values("record_id").head(n)
    out = []
    for row in df.to_dict("records"):
        ex = {"record_id": str(row["record_id"]), "text": str(row["text"])[:500]}
        for k in ("source", "reason"):
            if k in row and row[k] is not None:
                ex[k] = str(row[k])
        for k in ("label", "given_label", "suggested_label", "label_quality"):
            if k in row:
                ex[k] = clean_number(row[k]) if row[k] == row[k] else None
        out.append(ex)
    return out


def quality_section(stages: dict[str, StageDir], params: Params, checks: Checks) -> dict:
    q, anon = stages["quality"], stages["anonymized"]
    qp = params.quality
    policy = {"policy": qp.policy, "k_folds": qp.k_folds, "relabel_threshold": qp.relabel_threshold,
              "shortcut_margin": qp.shortcut_margin, "shortcut_rate_gap": qp.shortcut_rate_gap}
    before = _label_balance(anon.parquet_columns("records.parquet", ["source", "label"]))
    if not q.ran:
        return _section("quality", "not_run", note=_not_run(q), notes=q.notes, policy=policy,
                        class_balance={"before": before, "after": {}}, label_issues=None, decisions={},
                        reviewer_queue=None, shortcut=None, examples=[])
    m = q.metrics or {}
    qm: Optional[QualityMetrics] = q.model  # type: ignore[assignment]
    # described from the configuration (never from metrics strings, which the report does not echo)
    c_text = f"{qp.c:g}"
    policy["method"] = (
        f"cleanlab find_label_issues ({qp.filter_by}) on {qp.k_folds}-fold out-of-fold probabilities, the mean of "
        f"two L-BFGS logistic regressions (C = {c_text}), one on word + character TF-IDF and structured columns, one "
        f"on character TF-IDF only (the standard recipe's features), folds keeping "
        f"{'near-duplicates' if qp.fold_groups == 'duplicates' else 'customers and near-duplicates'} together"
    )
    policy["posterior_vetoed"] = None  # the stage withdraws no flag (issue 22)
    after = _label_balance(q.parquet_columns("records.parquet", ["source", "label"]))
    issues = qm.label_issues.count if qm else None
    decisions = count_dict(qm.decisions) if qm else None
    if decisions is None:
        sc = q.parquet_columns("scores.parquet", ["decision"])
        if sc is not None:
            decisions = dict(sorted(Counter(str(d) for d in sc["decision"]).items()))
    queue = q.parquet_rows("review_queue.parquet")
    queue_reported = qm.review_queue if qm else None
    if queue is None and isinstance(queue_reported, int):
        queue = queue_reported
    elif queue is not None and isinstance(queue_reported, int) and not isinstance(queue_reported, bool):
        checks.add("quality", "quality.review_queue_matches_metrics", queue == queue_reported,
                   "reviewer queue rows in review_queue.parquet equal the stage's reported queue size")
    auc = clean_number(qm.shortcut.auc) if qm else None
    shortcut = None
    if auc is not None:
        # the stage decides (issue 22): warning only when anonymization features alone nearly match the text model
        # or one placeholder's class rates differ by more than shortcut_rate_gap; a true signal is `info`
        auc_text = clean_number(getattr(qm.shortcut, "auc_text", None))
        warn_at = round(auc_text - qp.shortcut_margin, 4) if isinstance(auc_text, (int, float)) else None
        warn = bool(qm.shortcut.warning)
        shortcut = {"auc": auc, "warn_at": warn_at, "warning": warn, "auc_text": auc_text,
                    "status": qm.shortcut.status if safe_scalar(qm.shortcut.status)[0] else None,
                    "driver": qm.shortcut.driver if safe_scalar(qm.shortcut.driver)[0] else None,
                    "features": [f for f in (getattr(qm.shortcut, "features", None) or []) if safe_scalar(f)[0]][:20]}
        checks.add("quality", "quality.no_shortcut", not warn,
                   f"anonymization-features-only model AUC {auc} stays below the text model's AUC {auc_text} minus "
                   f"{qp.shortcut_margin}, and no placeholder's class rates differ by more than "
                   f"{qp.shortcut_rate_gap}", severity="warning", figure=auc, target=f"< {warn_at}")
    if before and after:
        n_before = sum(v["n"] for v in before.values())
        n_after = sum(v["n"] for v in after.values())
        dropped = sum(_ledger_sources(q.ledger).get(s, {}).get("dropped", 0) for s in before) if q.ledger else 0
        quarantined = sum(_ledger_sources(q.ledger).get(s, {}).get("quarantined", 0) for s in before) if q.ledger \
            else 0
        checks.add("quality", "quality.records_accounted", n_before == n_after + dropped + quarantined,
                   f"records before quality ({n_before}) = after ({n_after}) + dropped ({dropped})"
                   f" + quarantined ({quarantined})")
    return _section("quality", checks.status("quality"), policy=policy, label_issues=issues,
                    label_issue_rate=clean_number(qm.label_issues.rate) if qm else None,
                    records=qm.records if qm else None, kept=qm.kept if qm else None,
                    decisions=decisions or {}, reviewer_queue=queue, shortcut=shortcut,
                    class_balance={"before": before, "after": after}, sources=_ledger_sources(q.ledger),
                    examples=_queue_examples(q, params.report.queue_examples),
                    stage_metrics=numeric_leaves(m), notes=q.notes)


def split_frames(sp: StageDir) -> dict[str, Any]:
    frames = {}
    for name in SPLIT_NAMES:
        df = sp.parquet_columns(f"{name}.parquet", ["label"], optional=["group_id", "source"])
        if df is not None:
            frames[name] = df
    return frames


def splits_section(stages: dict[str, StageDir], params: Params, checks: Checks, frames: dict[str, Any]) -> dict:
    sp = stages["splits"]
    spp = params.split
    policy = {"test_size": spp.test_size, "val_size": spp.val_size, "time_based": spp.time_based,
              "rebalance": spp.rebalance, "target_ratio": spp.target_ratio}
    if not sp.ran and not frames:
        return _section("splits", "not_run", note=_not_run(sp), notes=sp.notes, policy=policy, splits={},
                        group_overlap=None, class_balance={})
    m = sp.metrics or {}
    sm: Optional[SplitMetrics] = sp.model  # type: ignore[assignment]
    if sm is not None and sm.rebalance.method:
        policy["rebalance_applied"] = sm.rebalance.method
    splits: dict[str, dict[str, Any]] = {}
    groups: dict[str, set] = {}
    for name, df in frames.items():
        bal = _label_balance(df, by="__none__")["all"]
        bal["by_source"] = _label_balance(df, "source") if "source" in df.columns else {}
        if "group_id" in df.columns:
            groups[name] = set(df["group_id"].dropna().astype(str))
            bal["groups"] = len(groups[name])
        splits[name] = bal
    overlap = None
    if len(groups) >= 2:
        overlap = {}
        names = [n for n in SPLIT_NAMES if n in groups]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                overlap[f"{a}/{b}"] = len(groups[a] & groups[b])
        checks.add("splits", "splits.no_group_overlap", sum(overlap.values()) == 0,
                   "no pseudonymous customer id appears in two splits")
    elif frames:
        checks.add("splits", "splits.group_overlap_checkable", False,
                   "split files carry no group_id column: group overlap not checked", severity="warning")
    for name, s in splits.items():
        if s["fraud"] < spp.min_minority_per_split or s["legit"] == 0:
            checks.add("splits", f"splits.{name}_has_both_classes", False,
                       f"{name} has {s['fraud']} fraud / {s['legit']} legitimate records "
                       f"(minimum minority {spp.min_minority_per_split})", severity="warning")
    # rebalancing, as the split stage reported it: train rows and minority/majority ratio before and after
    # (validation and test are never rebalanced: their counts are the stage's own)
    class_balance: dict[str, dict[str, Any]] = {}
    rebalance = None
    if sm is not None:
        rb = sm.rebalance
        rebalance = {"configured": rb.configured, "method": rb.method, "minority_label": rb.minority_label,
                     "target_ratio": clean_number(rb.target_ratio), "rows_before": rb.rows_before,
                     "rows_after": rb.rows_after, "ratio_before": clean_number(rb.ratio_before),
                     "ratio_after": clean_number(rb.ratio_after),
                     "train_flagged_dropped": rb.train_flagged.get("dropped")}
        for name in SPLIT_NAMES:
            c = sm.counts.get(name)
            if not c:
                continue
            after = {"rows": sm.sizes.get(name), "fraud": c.get("fraud"), "legit": c.get("legit"),
                     "prevalence": clean_number(sm.prevalence.get(name))}
            if c.get("fraud") is not None and c.get("legit"):
                after["ratio"] = clean_number(min(c["fraud"], c["legit"]) / max(c["fraud"], c["legit"]))
            before = dict(after)
            if name == "train" and rb.rows_before is not None:
                r = rb.ratio_before
                minority_fraud = (rb.minority_label or "fraud") == "fraud"
                before = {"rows": rb.rows_before, "ratio": clean_number(r),
                          "prevalence": clean_number((r if minority_fraud else 1.0) / (1.0 + r)) if r is not None
                          else None}
            class_balance[name] = {"before": before, "after": after}
    # sizes: the stage's reported sizes against the recount from the split files and the ledger
    if sm is not None and splits:
        mine = {n: s["n"] for n, s in splits.items()}
        checks.add("splits", "splits.sizes_match_metrics", all(sm.sizes.get(n) == v for n, v in mine.items()),
                   "split sizes recounted from the split files equal the split stage's metrics")
    if sp.ledger and splits:
        acc = _totals(_ledger_sources(sp.ledger))["accepted"]
        if policy.get("rebalance_applied", spp.rebalance) in ("none", "class_weight"):
            checks.add("splits", "splits.sizes_match_ledger", acc == sum(s["n"] for s in splits.values()),
                       f"records in the split files ({sum(s['n'] for s in splits.values())}) equal the split "
                       f"ledger's accepted total ({acc})")
    return _section("splits", checks.status("splits"), policy=policy, splits=splits, group_overlap=overlap,
                    class_balance=class_balance, rebalance=rebalance, sources=_ledger_sources(sp.ledger),
                    sizes=dict(sm.sizes) if sm else None,
                    stage_metrics=numeric_leaves(m), notes=sp.notes)


def split_source_counts(frames: dict[str, Any]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for name, df in frames.items():
        if "source" not in df.columns:
            return {}
        for src, n in Counter(df["source"].astype(str)).items():
            out.setdefault(src, {"total": 0})
            out[src][name] = n
            out[src]["total"] += n
    return out


_METRIC_PREFS = ("pr_auc", "roc_auc", "f1", "precision", "recall", "recall_at_1pct_fpr", "threshold")


def _variants(cm: CompressMetrics) -> list[dict[str, Any]]:
    """The compress stage's variant table: every number / short identifier of each variant."""
    rows = []
    for v in cm.variants[:30]:
        if not safe_scalar(v.name)[0]:
            continue
        row: dict[str, Any] = {"name": v.name}
        for k, val in sorted(v.model_dump(mode="json").items()):
            if k == "name":
                continue
            keep, val = safe_scalar(val)
            if keep and val is not None:
                row[k] = val
        rows.append(row)
    return rows


_SEGMENT_NAME = re.compile(r"[^A-Za-z0-9_.:/+\- <>=()]")


def _segment_check(cm: CompressMetrics, checks: Checks) -> None:
    """compress's per-segment evaluation (source, channel, region, amount band ...): a warning when the shipped
    model's test recall in some segment is significantly below its overall recall (segment names are data values:
    reduced to a short safe alphabet)."""
    sb = cm.segments_by if isinstance(cm.segments_by, dict) else {}
    dims = sb.get("dimensions") if isinstance(sb.get("dimensions"), dict) else {}
    if not dims:
        return
    below = []
    for dim, block in dims.items():
        for name, r in ((block or {}).get("segments") or {}).items():
            if isinstance(r, dict) and r.get("recall_below_overall") is True:
                ci = r.get("recall_ci") or [None, None]
                below.append(f"{_SEGMENT_NAME.sub('', str(dim))[:32]}={_SEGMENT_NAME.sub('', str(name))[:40]} "
                             f"(recall {clean_number(r.get('recall'))}, 95% interval {clean_number(ci[0])}-"
                             f"{clean_number(ci[1])}, {clean_number(r.get('n_fraud'))} fraud)")
    names = ", ".join(_SEGMENT_NAME.sub("", str(d))[:32] for d in dims)
    checks.add("model", "model.segment_recall_not_below_overall", not below,
               f"test recall at the shipped threshold per segment ({names}; overall "
               f"{clean_number(sb.get('overall_recall'))}): "
               + ("no segment is significantly below the overall" if not below
                  else "significantly below the overall in " + "; ".join(below)),
               severity="warning")


def model_section(stages: dict[str, StageDir], params: Params, checks: Checks) -> dict:
    from pipeline.io import sha256_tree

    lora, comp, sp = stages["lora"], stages["compressed"], stages["splits"]
    tp = params.train
    config = {"base_model": tp.base_model, "epochs": tp.epochs, "lora_r": tp.lora_r, "lora_alpha": tp.lora_alpha,
              "target_modules": list(tp.target_modules), "max_length": tp.max_length,
              "pr_auc_budget": params.compress.pr_auc_budget}
    if not lora.ran and not comp.ran:
        return _section("model", "not_run", note=_not_run(lora), notes=lora.notes + comp.notes, config=config,
                        training_data=None, metrics={}, compression=None)
    m = lora.metrics or {}
    tm: Optional[TrainMetrics] = lora.model  # type: ignore[assignment]
    # the train stage records the data it saw in training_args.json: data_version.dataset_sha256
    recorded = ((lora.json("training_args.json") or {}).get("data_version") or {}).get("dataset_sha256")
    recorded = recorded if isinstance(recorded, str) and re.fullmatch(r"[0-9a-f]{16,64}", recorded) else None
    current = sha256_tree(sp.path / "dataset") if (sp.path / "dataset").is_dir() else None
    training = {"recorded_sha256": recorded, "current_splits_sha256": current,
                "matches": (recorded == current) if recorded and current else None}
    if training["matches"] is not None:
        checks.add("model", "model.trained_on_current_splits", training["matches"],
                   "the data hash recorded by training equals the current splits/dataset hash")
    metrics: dict[str, Any] = {}
    if tm is not None:
        for scope in ("test", "validation"):
            ev = getattr(tm, scope).model_dump()
            for k in _METRIC_PREFS:
                if isinstance(ev.get(k), (int, float)):
                    metrics[f"{scope}.{k}"] = clean_number(ev[k])
    compression = None
    cm: Optional[CompressMetrics] = comp.model  # type: ignore[assignment]
    if cm is not None:
        rows = _variants(cm)
        chosen = cm.chosen if safe_scalar(cm.chosen)[0] else None
        reference = cm.reference if cm.reference and safe_scalar(cm.reference)[0] else None
        rule = cm.chosen_rule
        ch = cm.variant(cm.chosen)
        compression = {"variants": rows, "chosen": chosen, "reference": reference,
                       "pr_auc_budget": cm.pr_auc_budget if cm.pr_auc_budget is not None
                       else params.compress.pr_auc_budget,
                       "chosen_pr_auc": clean_number(ch.pr_auc) if ch else None,
                       # the figure the floor rule compared with the baseline's (validation when chosen_on says so)
                       "chosen_rule_pr_auc": clean_number(getattr(ch, rule.chosen_on or "pr_auc", None)) if ch else None,
                       "chosen_rule_split": "validation" if rule.chosen_on == "val_pr_auc" else "test",
                       "chosen_size_mb": clean_number(ch.size_mb) if ch else None,
                       "baseline": cm.baseline, "baseline_pr_auc": clean_number(rule.baseline_pr_auc),
                       "floor_met": rule.floor_met, "budget_only_choice": rule.budget_only_choice,
                       "true_labels": _true_label_view(cm.true_labels, chosen, cm.baseline)}
        ref = cm.variant(cm.reference)
        if ch and ref and ch.pr_auc is not None and ref.pr_auc is not None:
            drop = clean_number(ref.pr_auc - ch.pr_auc)  # test
            compression["pr_auc_drop"] = drop
            budget = compression["pr_auc_budget"]
            # the budget is the compress rule's, on the split the rule chose on (validation; the test split is never
            # used to choose): judged there, with the test figure beside it
            on = rule.chosen_on or "pr_auc"
            ch_on, ref_on = getattr(ch, on, None), getattr(ref, on, None)
            rule_drop = clean_number(ref_on - ch_on) if ch_on is not None and ref_on is not None else drop
            split = compression["chosen_rule_split"] if ch_on is not None and ref_on is not None else "test"
            compression["pr_auc_drop_rule"] = rule_drop
            compression["pr_auc_drop_rule_split"] = split
            checks.add("model", "model.chosen_within_budget", rule_drop <= budget + 1e-9,
                       f"chosen artifact {chosen!s} loses {rule_drop} {split} PR-AUC against {ref.name} (budget "
                       f"{budget}, on the split the variant was chosen on)"
                       + (f"; on test it loses {drop}" if split != "test" else ""),
                       figure=rule_drop, target=f"<= {budget}")
            below = getattr(rule, "significantly_below_fp32", None)
            if isinstance(below, list) and ref.name == "fp32":
                checks.add("model", "model.chosen_not_significantly_below_fp32", chosen not in below,
                           f"paired bootstrap on {split}: variants significantly below fp32: "
                           f"{', '.join(map(str, below)) or 'none'}; chosen {chosen!s}")
        if rule.floor_met is not None:
            # declared target: the shipped model must reach the baseline's PR-AUC (compress.baseline_floor)
            checks.add("model", "model.beats_baseline", rule.floor_met,
                       f"the chosen artifact {chosen!s} ({compression['chosen_rule_split']} PR-AUC "
                       f"{compression['chosen_rule_pr_auc']}; test {compression['chosen_pr_auc']}) reaches the "
                       f"{cm.baseline or 'baseline'}'s {compression['chosen_rule_split']} PR-AUC "
                       f"{compression['baseline_pr_auc']}"
                       + ("" if rule.floor_met else ": no variant within the budget does; the baseline beats the "
                          "shipped model"),
                       severity="warning", figure=compression["chosen_rule_pr_auc"],
                       target=f">= {compression['baseline_pr_auc']} (baseline)")
        _segment_check(cm, checks)
    return _section("model", checks.status("model"), config=config, training_data=training, metrics=metrics,
                    compression=compression, model_card=lora.file("model_card.md") is not None,
                    stage_metrics={**{f"train.{k}": v for k, v in numeric_leaves(m).items()},
                                   **{f"compress.{k}": v for k, v in numeric_leaves(comp.metrics or {}).items()}},
                    notes=lora.notes + comp.notes)


def _true_label_view(truth: Optional[dict[str, Any]], chosen: Optional[str], baseline: Optional[str]
                     ) -> Optional[dict[str, Any]]:
    """The compress stage's test figures against the ground truth (demo), chosen variant and baseline, as written."""
    if not isinstance(truth, dict) or not isinstance(truth.get("variants"), dict) or chosen is None:
        return None
    var = truth["variants"]
    c, b = var.get(chosen) or {}, var.get(baseline or "") or {}
    vb = (truth.get("versus_baseline_true") or {}).get("pr_auc") or {}
    return {"n": truth.get("matched"), "n_fraud_true": truth.get("n_fraud_true"),
            "label_disagreements": truth.get("label_disagreements"),
            "chosen_pr_auc_true": clean_number(c.get("pr_auc_true")), "chosen_pr_auc_given": clean_number(c.get("pr_auc_given")),
            "baseline_pr_auc_true": clean_number(b.get("pr_auc_true")),
            "baseline_pr_auc_given": clean_number(b.get("pr_auc_given")),
            "diff": clean_number(vb.get("diff")), "ci_low": clean_number(vb.get("ci_low")),
            "ci_high": clean_number(vb.get("ci_high"))}


# -------------------------------------------------------------------------------------------------- changes


def comparables(report: dict) -> dict[str, Any]:
    """The numbers two reports are compared on (dotted key -> number); tolerant of older report layouts."""
    out: dict[str, Any] = {}
    sec = report.get("sections") or {}
    for name, s in ((sec.get("sources") or {}).get("sources") or {}).items():
        for k in LEDGER_KEYS:
            if isinstance(s.get(k), int):
                out[f"sources.{name}.{k}"] = s[k]
    pii = sec.get("pii") or {}
    for t, n in ((pii.get("entities") or {}).get("by_type") or {}).items():
        out[f"pii.entities.{t}"] = n
    for t, n in ((pii.get("gate") or {}).get("residual") or {}).items():
        out[f"pii.gate.residual.{t}"] = n
    q = sec.get("quality") or {}
    if isinstance(q.get("label_issues"), int):
        out["quality.label_issues"] = q["label_issues"]
    if isinstance(q.get("reviewer_queue"), int):
        out["quality.reviewer_queue"] = q["reviewer_queue"]
    for d, n in (q.get("decisions") or {}).items():
        out[f"quality.decisions.{d}"] = n
    for name, s in ((sec.get("splits") or {}).get("splits") or {}).items():
        for k in ("n", "fraud", "legit", "prevalence", "groups"):
            if isinstance(s.get(k), (int, float)):
                out[f"splits.{name}.{k}"] = s[k]
    for k, v in ((sec.get("model") or {}).get("metrics") or {}).items():
        out[f"model.{k}"] = v
    return out


def params_changes(previous: Any, current: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameters that differ between two resolved params documents: [{key (dotted), previous, current}]
    (lists and dicts compared as a whole leaf when they are not plain mappings)."""
    if not isinstance(previous, dict):
        return []

    def leaves(d: Any, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        if isinstance(d, dict) and (d or not prefix):
            for k, v in d.items():
                out.update(leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        else:
            out[prefix] = d
        return out

    a, b = leaves(previous), leaves(current)

    def show(v: Any) -> Any:
        return v if v is None or isinstance(v, (bool, int, float, str)) else str(v)

    return [{"key": k, "previous": show(a.get(k)), "current": show(b.get(k))}
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def changes_section(current: dict, previous: Optional[dict], previous_note: Optional[str]) -> dict:
    if previous is not None:
        try:
            a = comparables(previous)
        except (AttributeError, TypeError):
            previous, previous_note = None, "the previous report has an unknown layout; not compared."
    if previous is None:
        return _section("changes", "not_run", note=previous_note or "no previous report: this is the first version.",
                        previous=None, rows=[], unchanged=0, files_changed=[])
    a = {k: v for k, v in a.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    b = comparables(current)
    rows = []
    unchanged = 0
    for k in sorted(set(a) | set(b)):
        pa, pb = a.get(k), b.get(k)
        if pa == pb:
            unchanged += 1
            continue
        delta = clean_number(pb - pa) if isinstance(pa, (int, float)) and isinstance(pb, (int, float)) else None
        rows.append({"metric": k, "previous": pa, "current": pb, "delta": delta})
    prun = previous.get("run") if isinstance(previous.get("run"), dict) else {}
    pdv = prun.get("data_versions") if isinstance(prun.get("data_versions"), list) else []
    prev_files = {d.get("path"): d.get("sha256") for d in pdv if isinstance(d, dict) and isinstance(d.get("path"), str)}
    cur_files = {d["path"]: d.get("sha256") for d in current["run"]["data_versions"]}
    files_changed = [{"path": p, "change": "added" if p not in prev_files else "removed" if p not in cur_files
                      else "changed"}
                     for p in sorted(set(prev_files) | set(cur_files)) if prev_files.get(p) != cur_files.get(p)]
    pcode = prun.get("code_version") if isinstance(prun.get("code_version"), dict) else {}
    info = {"generated_at": prun.get("generated_at") if isinstance(prun.get("generated_at"), str) else None,
            "git_sha": pcode.get("git_sha") if isinstance(pcode.get("git_sha"), str) else None,
            "params_hash": prun.get("params_hash") if isinstance(prun.get("params_hash"), str) else None}
    info["params_changed"] = info["params_hash"] != current["run"]["params_hash"]
    info["params_changed_keys"] = params_changes(prun.get("params"), current["run"]["params"])
    info["code_changed"] = info["git_sha"] != current["run"]["code_version"]["git_sha"]
    return _section("changes", "ok", previous=info, rows=rows, unchanged=unchanged, files_changed=files_changed)


# ---------------------------------------------------------------------------------------------------- build


def build_report(params: Params, previous: Optional[dict], previous_note: Optional[str],
                 signing: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(report.json document, described artifacts with absolute paths under '_abs' for the manifest)."""
    stages = load_stages(params)
    checks = Checks()
    frames = split_frames(stages["splits"])
    artifacts = describe_artifacts(stages)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "title": params.report.title,
        "run": {
            "generated_at": utc_now(),
            "time_pinned": (os.environ.get("SOURCE_DATE_EPOCH") or "").strip().isdigit(),
            "code_version": git_version(),
            "params_hash": params.digest(),
            "params": params.model_dump(mode="json"),
            "libraries": library_versions(),
            "stages": {sd.stage: {"path": display_path(sd.path), "ran": sd.ran,
                                  "ledger": sd.ledger is not None, "metrics": sd.metrics is not None}
                       for sd in stages.values()},
            "data_versions": [{k: v for k, v in a.items() if k != "_abs"} for a in artifacts],
        },
    }
    sections = {
        "sources": sources_section(stages, checks, split_source_counts(frames)),
        "pii": pii_section(stages, params, checks),
        "quality": quality_section(stages, params, checks),
        "splits": splits_section(stages, params, checks, frames),
        "model": model_section(stages, params, checks),
    }
    run_t = SECTIONS["run"]
    report["run"].update(guarantee=run_t["guarantee"], how_checked=run_t["how_checked"],
                         references=run_t["references"])
    report["sections"] = sections
    report["sections"]["changes"] = changes_section(report, previous, previous_note)
    report["sections"]["integrity"] = _section("integrity", "ok", manifest="manifest.json",
                                               signed=bool(signing.get("signed")),
                                               public_key_fingerprint=signing.get("public_key_fingerprint"),
                                               verify_command="fraudslm verify-report <report folder>")
    report["checks"] = checks.items
    failed = [c for c in checks.items if c["passed"] is False and c["severity"] == "error"]
    warned = [c for c in checks.items if c["passed"] is False and c["severity"] != "error"]
    # "changes" not run only means this is the first version: not a reason for attention
    not_run = [k for k, s in sections.items() if s["status"] == "not_run" and k != "changes"]
    report["summary"] = {
        "overall": "fail" if failed else "attention" if (warned or not_run) else "pass",
        "checks_passed": sum(1 for c in checks.items if c["passed"] is True),
        "checks_failed": len(failed),
        "warnings": len(warned),
        "sections_not_run": not_run,
    }
    report["signoff"] = {"reviewer_name": "", "role": "", "date": "", "decision": "", "signature": "",
                         "comments": ""}
    return report, artifacts
