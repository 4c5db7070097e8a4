"""Anonymize stage: PII detection (detect.py), replacement and the leakage gate (stage.py and the modules
it calls)."""

from __future__ import annotations

from pipeline.lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: pipeline/lazy.py)
_LAZY = {
    "run_anonymize": "pipeline.anonymize.stage",
    "detect_pii_file": "pipeline.anonymize.detect",
    "build_detector": "pipeline.anonymize.detect",
    "Detector": "pipeline.anonymize.detect",
    "Span": "pipeline.anonymize.detect",
    "Operator": "pipeline.anonymize.operators",
    "OPERATORS": "pipeline.anonymize.operators",
    "residual_risk": "pipeline.anonymize.evaluate",
    "reidentification": "pipeline.anonymize.evaluate",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
