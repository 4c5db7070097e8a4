"""`run_report`: collect -> render -> scan -> manifest (+ signature) -> publish the report folder atomically."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Optional

from pipeline.config import Params
from pipeline.contracts import HEADLINE_FILE, ReportLedger, ReportMetrics, validate_metrics
from pipeline.errors import GateError
from pipeline.io import atomic_dir, to_jsonable, write_bytes, write_text
from pipeline.ledger import Ledger
from pipeline.report.collect import build_report, display_path
from pipeline.report.integrity import (
    MANIFEST,
    SIGNATURE,
    build_manifest,
    load_signing_key,
    manifest_bytes,
    sign,
    signing_info,
)
from pipeline.report.plots import all_plots
from pipeline.report.render import render_html
from pipeline.report.scan import scan_for_pii

HISTORY = "history"
PREVIOUS = f"{HISTORY}/previous.json"  # the report this one was compared with
LATEST = f"{HISTORY}/latest.json"  # a copy of this report: found by the next run even when DVC removed report.json
MANAGED = frozenset({"report.json", "report.html", MANIFEST, SIGNATURE, "ledger.json", "metrics.json", HEADLINE_FILE,
                     HISTORY})


def _json_text(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _previous(out: Path) -> tuple[Optional[dict], Optional[bytes], Optional[str]]:
    """(previous report, its exact bytes, note) from out/report.json, else out/history/latest.json."""
    for cand in (out / "report.json", out / LATEST):
        if not cand.is_file():
            continue
        data = cand.read_bytes()
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, None, f"{display_path(cand)}: previous report unreadable; not compared"
        if not isinstance(doc, dict):
            return None, None, f"{display_path(cand)}: previous report is not a JSON object; not compared"
        return doc, data, None
    return None, None, None


def run_report(out: str | Path, params: Params) -> dict[str, Any]:
    """Write report.json, report.html, manifest.json (+ manifest.sig), ledger.json and metrics.json into `out`.

    GateError (exit 1) when the rendered report matches a PII pattern (nothing is published then); ConfigError
    (exit 2) for an unusable signing key. Missing stage outputs are reported as "not run", never an error."""
    out = Path(out)
    key = load_signing_key()  # a bad key fails before any work
    previous, previous_bytes, previous_note = _previous(out)
    report, artifacts = build_report(params, previous, previous_note, signing_info(key))
    html = render_html(report, all_plots(report))
    report_text = _json_text(report)

    ledger = Ledger("report")
    for stage, st in report["run"]["stages"].items():
        ledger.read(stage)
        if st["ran"]:
            ledger.accept(stage)
        else:
            ledger.drop(stage, "not_run")
    ledger.extra["unit"] = "stage output folder (the report reads counts, never records)"
    summary = report["summary"]
    own = ["report.json", "report.html", "ledger.json", "metrics.json", LATEST]
    metrics: dict[str, Any] = {
        "stage": "report",
        "overall": summary["overall"],
        "checks_passed": summary["checks_passed"],
        "checks_failed": summary["checks_failed"],
        "warnings": summary["warnings"],
        "sections": {k: s["status"] for k, s in sorted(report["sections"].items())},
        "artifacts_described": sum(1 for a in artifacts if a.get("_abs") is not None),
        "restricted_not_read": sum(1 for a in artifacts if a.get("kind") == "restricted"),
        "signed": key is not None,
        "compared_with_previous": previous is not None,
        "pii_scan": {"passed": True, "files_scanned": len(own) + 1 + (previous_bytes is not None),
                     "method": "leakage gate patterns over every published file"},
    }
    contract = ReportMetrics.model_validate(metrics)  # the report's own metrics go through its contract too
    own.append(HEADLINE_FILE)
    texts = {"report.json": report_text, "report.html": html,
             "ledger.json": _json_text(validate_metrics(ReportLedger, ledger.to_dict()).model_dump(mode="json",
                                                                                                  exclude_unset=True)),
             "metrics.json": _json_text(metrics), HEADLINE_FILE: _json_text(contract.headline()), LATEST: report_text}
    if previous_bytes is not None:
        texts[PREVIOUS] = previous_bytes.decode("utf-8")
        own.append(PREVIOUS)
    min_score = params.anonymize.gate.min_score
    _fail_on_pii(scan_for_pii(texts, min_score))

    with atomic_dir(out) as tmp:
        if out.is_dir():  # keep what a reviewer put beside the report (e.g. a signed PDF) and older history
            for child in out.iterdir():
                if child.name.startswith("."):
                    continue
                if child.name == HISTORY and child.is_dir():
                    shutil.copytree(child, tmp / HISTORY, dirs_exist_ok=True)
                elif child.name not in MANAGED:
                    (shutil.copytree if child.is_dir() else shutil.copy2)(child, tmp / child.name)
        for name, text in texts.items():
            write_text(tmp / name, text)
        manifest = build_manifest(tmp, out, own, artifacts, report["run"], key)
        mbytes = manifest_bytes(manifest)
        _fail_on_pii(scan_for_pii({MANIFEST: mbytes.decode("utf-8")}, min_score))
        write_bytes(tmp / MANIFEST, mbytes)
        if key is not None:
            write_bytes(tmp / SIGNATURE, sign(mbytes, key))
    return {"out": str(out), "overall": summary["overall"], "signed": key is not None,
            "files": len(manifest["files"]), "checks_failed": summary["checks_failed"],
            "sections_not_run": summary["sections_not_run"]}


def _fail_on_pii(found: dict[str, dict[str, int]]) -> None:
    if found:
        name, types = next(iter(found.items()))
        what = ", ".join(f"{t}: {n}" for t, n in types.items())
        more = f" and {len(found) - 1} other file(s)" if len(found) > 1 else ""
        raise GateError(f"report: possible PII in {name}{more} ({what}); nothing was published")
