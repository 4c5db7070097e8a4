"""Model stages: LoRA fine-tune (`run_train`), compression and the size/latency/accuracy table (`run_compress`).

`pipeline.train.predict` (ONNX and sklearn scoring) must not pull in torch through this package: hence lazy."""

from __future__ import annotations

from pipeline.lazy import lazy_getattr

# public name -> the module that defines it (imported on first use: pipeline/lazy.py)
_LAZY = {
    "run_train": "pipeline.train.trainer",
    "run_compress": "pipeline.train.compress",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
