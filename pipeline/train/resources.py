"""Threads from the cores actually free (no torch import): `threads: auto` in train, compress and predict."""

from __future__ import annotations

import math
import os
from typing import Union


def free_cores() -> int:
    """Cores this process may use (CPU affinity) minus the 1-minute load average, at least 1. Measured on a shared
    2-core machine: 2 torch threads with another job running made an epoch ~7x slower than 1 thread, so when the
    load average cannot be read the answer is 1."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1
    return max(1, min(usable, int(math.floor(usable - load + 0.5))))


def resolve_threads(setting: Union[int, str]) -> int:
    return free_cores() if setting == "auto" else max(1, int(setting))
