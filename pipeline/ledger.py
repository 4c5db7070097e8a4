"""Per-stage accounting: records in = out + quarantined + dropped (duplicates or policy), per source and reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.contracts import LEDGER_KEYS, STAGE_BY_NAME, StageLedger, read_ledger, write_ledger


@dataclass
class SourceCount:
    read: int = 0
    accepted: int = 0
    quarantined: int = 0
    duplicates: int = 0
    dropped: int = 0
    reasons: Counter = field(default_factory=Counter)
    sha256: str | None = None
    bytes: int | None = None

    @property
    def balanced(self) -> bool:
        return self.read == self.accepted + self.quarantined + self.duplicates + self.dropped

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "read": self.read,
            "accepted": self.accepted,
            "quarantined": self.quarantined,
            "duplicates": self.duplicates,
            "dropped": self.dropped,
            "reasons": dict(sorted(self.reasons.items())),
        }
        if self.sha256 is not None:
            d["sha256"] = self.sha256
        if self.bytes is not None:
            d["bytes"] = self.bytes
        return d


class Ledger:
    """Accumulates counts for one stage and writes `ledger.json`."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.sources: dict[str, SourceCount] = {}
        self.extra: dict[str, Any] = {}

    def source(self, name: str) -> SourceCount:
        return self.sources.setdefault(name, SourceCount())

    def read(self, source: str, n: int = 1) -> None:
        self.source(source).read += n

    def accept(self, source: str, n: int = 1) -> None:
        self.source(source).accepted += n

    def quarantine(self, source: str, reason: str, n: int = 1) -> None:
        s = self.source(source)
        s.quarantined += n
        s.reasons[reason] += n

    def duplicate(self, source: str, kind: str = "duplicate", n: int = 1) -> None:
        s = self.source(source)
        s.duplicates += n
        s.reasons[kind] += n

    def drop(self, source: str, reason: str, n: int = 1) -> None:
        s = self.source(source)
        s.dropped += n
        s.reasons[reason] += n

    def merge(self, other: "Ledger") -> None:
        """Add the counts of another ledger of the same stage (e.g. one partition's, counted in a worker)."""
        for name, o in other.sources.items():
            s = self.source(name)
            s.read += o.read
            s.accepted += o.accepted
            s.quarantined += o.quarantined
            s.duplicates += o.duplicates
            s.dropped += o.dropped
            s.reasons.update(o.reasons)

    @property
    def balanced(self) -> bool:
        return all(s.balanced for s in self.sources.values())

    def unbalanced(self) -> list[str]:
        return [n for n, s in sorted(self.sources.items()) if not s.balanced]

    def totals(self) -> dict[str, int]:
        return {k: sum(getattr(s, k) for s in self.sources.values()) for k in LEDGER_KEYS}

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "balanced": self.balanced,
            "totals": self.totals(),
            "sources": {n: s.to_dict() for n, s in sorted(self.sources.items())},
            **self.extra,
        }

    def write(self, out_dir: str | Path) -> Path:
        """Write `ledger.json` through the stage's contract model (pipeline.contracts)."""
        stage = STAGE_BY_NAME.get(self.stage)
        write_ledger(out_dir, self.to_dict(), stage.ledger if stage else StageLedger)
        return Path(out_dir) / "ledger.json"


def load_ledger(path: str | Path) -> dict[str, Any]:
    return read_ledger(path).model_dump(mode="json", exclude_unset=True)
