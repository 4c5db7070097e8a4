"""Label quality: out-of-fold probabilities, cleanlab label issues, outliers, imbalance, shortcut check."""

from __future__ import annotations

from pipeline.lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: pipeline/lazy.py)
_LAZY = {
    "run_quality": "pipeline.quality.stage",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
