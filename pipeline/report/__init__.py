"""Audit report: `run_report(out, params)` writes report.json / report.html / manifest.json (+ manifest.sig);
`verify_report(report_dir)` re-checks every hash and the signature (GateError, exit 1, on any mismatch)."""

from __future__ import annotations

from pipeline.lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: pipeline/lazy.py)
_LAZY = {
    "run_report": "pipeline.report.stage",
    "verify_report": "pipeline.report.integrity",
    "VerifyResult": "pipeline.report.integrity",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
