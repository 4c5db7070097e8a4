"""Seeded generator of the embedded demo sources (five fragmented finance-fraud sources) with ground truth."""

from __future__ import annotations

from pipeline.lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: pipeline/lazy.py)
_LAZY = {
    "SOURCES": "pipeline.demo.generator",
    "generate": "pipeline.demo.generator",
    "source_counts": "pipeline.demo.generator",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
