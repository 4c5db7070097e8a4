"""Label quality: out-of-fold probabilities, cleanlab label issues, outliers, imbalance, shortcut check."""

from pipeline.quality.stage import run_quality

__all__ = ["run_quality"]
