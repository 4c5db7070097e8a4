"""Audit report: `run_report(out, params)` writes report.json / report.html / manifest.json (+ manifest.sig);
`verify_report(report_dir)` re-checks every hash and the signature (GateError, exit 1, on any mismatch)."""

from pipeline.report.integrity import VerifyResult, verify_report
from pipeline.report.stage import run_report

__all__ = ["run_report", "verify_report", "VerifyResult"]
