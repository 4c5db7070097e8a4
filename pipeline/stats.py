"""Small statistics the stages share (one implementation each)."""

from __future__ import annotations

from statistics import NormalDist
from typing import Optional

Z95 = 1.959963984540054  # the two-sided 95% normal quantile (0 / n then gives a lower bound of exactly 0)


def wilson_interval(k: int, n: int, level: float = 0.95) -> Optional[tuple[float, float]]:
    """Wilson score interval of the proportion k / n at `level` (None when n = 0): sound for the small counts and the
    0 / n and n / n proportions where a normal or a bootstrap interval collapses."""
    if n <= 0:
        return None
    z = Z95 if level == 0.95 else NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = k / n
    denom = 1 + z * z / n
    centre = p + z * z / (2 * n)
    margin = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5)
    return max(0.0, (centre - margin) / denom), min(1.0, (centre + margin) / denom)


def wilson_lower(k: int, n: int, level: float = 0.95) -> Optional[float]:
    """Lower bound of `wilson_interval` (None when n = 0)."""
    ci = wilson_interval(k, n, level)
    return None if ci is None else ci[0]
