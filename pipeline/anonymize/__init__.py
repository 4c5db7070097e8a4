"""Anonymize stage: PII detection (detect.py) and replacement (stage.py). Imports are lazy so that one module's
absence or import error does not break the other."""

from __future__ import annotations

from typing import Any

__all__ = ["run_anonymize", "detect_pii_file", "build_detector", "Detector", "Span"]


def __getattr__(name: str) -> Any:
    if name == "run_anonymize":
        from pipeline.anonymize.stage import run_anonymize

        return run_anonymize
    if name in ("detect_pii_file", "build_detector", "Detector", "Span"):
        from pipeline.anonymize import detect

        return getattr(detect, name)
    raise AttributeError(f"module 'pipeline.anonymize' has no attribute {name!r}")
