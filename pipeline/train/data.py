"""Input side of train and compress: the privacy gate, the split folder's DatasetDict, provenance.

The model stages only ever read the split stage's folder. Before any record is read, the anonymize stage's gate
must be on record as passed (`<splits>/provenance.json` -> `gate.passed is True`, carried forward by the quality and
split stages, pipeline.provenance). Without it the stages refuse with GateError (exit 1): raw data can never reach a
model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from pipeline.config import Params
from pipeline.errors import ConfigError, GateError
from pipeline.io import read_json, sha256_file, sha256_tree
from pipeline.ledger import Ledger
from pipeline import provenance
from pipeline.provenance import require_passed_gate

log = logging.getLogger("fraudslm.train")

SPLITS = ("train", "validation", "test")
POSITIVE_NAME = "fraud"


# ---------------------------------------------------------------------------------------------------------------
# privacy gate


def check_upstream_gate(splits_dir: Path, params: Optional[Params] = None) -> dict[str, Any]:
    """Refuse (GateError) unless the anonymize gate is on record as passed for this split folder: the passport in
    `<splits>/provenance.json`, written by the split stage from the quality stage's (pipeline.provenance)."""
    gate = require_passed_gate(Path(splits_dir), "training").model_dump(mode="json", exclude_none=True)
    return {k: gate[k] for k in sorted(gate) if k in ("passed", "key_fingerprint", "residual", "checked_records")}


# ---------------------------------------------------------------------------------------------------------------
# the DatasetDict


@dataclass
class SplitData:
    """One split as plain arrays (text never leaves this object into logs or metrics)."""

    name: str
    texts: list[str]
    labels: np.ndarray
    record_ids: list[str]
    sources: list[str]
    weights: Optional[np.ndarray]
    read: int
    dropped: dict[str, dict[str, int]]  # source -> reason -> n

    def __len__(self) -> int:
        return len(self.texts)

    def source_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sources:
            out[s] = out.get(s, 0) + 1
        return dict(sorted(out.items()))


def dataset_dir(splits_dir: Path) -> Path:
    return Path(splits_dir) / "dataset"


def load_splits(splits_dir: Path, names: tuple[str, ...] = SPLITS) -> dict[str, SplitData]:
    """Read `<splits>/dataset` (datasets.DatasetDict.save_to_disk) into SplitData per split.

    Records with a missing/empty text or a label other than legit/fraud are dropped with a reason (ledger)."""
    from datasets import ClassLabel, DatasetDict, load_from_disk

    ddir = dataset_dir(splits_dir)
    if not ddir.is_dir():
        raise ConfigError(f"{ddir}: DatasetDict not found (run `fraudslm split` first)")
    try:
        dd = load_from_disk(str(ddir))
    except Exception as exc:  # noqa: BLE001 - any datasets error is a bad input folder
        raise ConfigError(f"{ddir}: not a readable DatasetDict ({type(exc).__name__})") from None
    if not isinstance(dd, DatasetDict):
        raise ConfigError(f"{ddir}: expected a DatasetDict with splits {list(names)}, found a single Dataset")
    out: dict[str, SplitData] = {}
    for name in names:
        if name not in dd:
            raise ConfigError(f"{ddir}: split {name!r} missing (found {sorted(dd)})")
        ds = dd[name]
        missing = [c for c in ("text", "label", "record_id", "source") if c not in ds.column_names]
        if missing:
            raise ConfigError(f"{ddir}: split {name!r} lacks column(s) {missing}")
        pos = 1
        feat = ds.features["label"]
        if isinstance(feat, ClassLabel):
            if POSITIVE_NAME not in feat.names:
                raise ConfigError(f"{ddir}: label names {feat.names} lack {POSITIVE_NAME!r}")
            pos = feat.names.index(POSITIVE_NAME)
            if len(feat.names) != 2:
                raise ConfigError(f"{ddir}: expected 2 label names, found {feat.names}")
        cols = ds.to_dict()
        texts, labels, rids, srcs, wts = [], [], [], [], []
        has_w = "weight" in ds.column_names
        dropped: dict[str, dict[str, int]] = {}
        for i in range(len(ds)):
            t, lab, src = cols["text"][i], cols["label"][i], str(cols["source"][i])
            reason = None
            if not isinstance(t, str) or not t.strip():
                reason = "empty_text"
            elif lab is None or lab not in (0, 1):
                reason = "unlabeled"
            elif has_w and (cols["weight"][i] is None or not np.isfinite(cols["weight"][i]) or cols["weight"][i] < 0):
                reason = "bad_weight"
            if reason:
                dropped.setdefault(src, {}).setdefault(reason, 0)
                dropped[src][reason] += 1
                continue
            texts.append(t)
            labels.append(1 if lab == pos else 0)
            rids.append(str(cols["record_id"][i]))
            srcs.append(src)
            if has_w:
                wts.append(float(cols["weight"][i]))
        out[name] = SplitData(name=name, texts=texts, labels=np.asarray(labels, dtype=np.int64), record_ids=rids,
                              sources=srcs, weights=np.asarray(wts, dtype=np.float32) if has_w else None,
                              read=len(ds), dropped=dropped)
    return out


def ledger_for(stage: str, splits: dict[str, SplitData], used: Optional[dict[str, set[str]]] = None) -> Ledger:
    """Ledger keyed by source over the splits read; per-split counts in `splits`. `used[split]` limits which
    record_ids count as accepted (the rest are dropped with reason `not_used:<split>`)."""
    led = Ledger(stage)
    per_split: dict[str, Any] = {}
    for name, sd in splits.items():
        keep = used.get(name) if used else None
        counts = {"read": sd.read, "used": 0, "dropped": 0, "by_source": {}}
        for src, reasons in sd.dropped.items():
            for reason, n in reasons.items():
                led.read(src, n)
                led.drop(src, f"{name}:{reason}", n)
                counts["dropped"] += n
        for rid, src in zip(sd.record_ids, sd.sources):
            led.read(src)
            if keep is None or rid in keep:
                led.accept(src)
                counts["used"] += 1
                counts["by_source"][src] = counts["by_source"].get(src, 0) + 1
            else:
                led.drop(src, f"{name}:max_train_samples")
                counts["dropped"] += 1
        counts["by_source"] = dict(sorted(counts["by_source"].items()))
        per_split[name] = counts
    led.extra["splits"] = per_split
    return led


def write_ledger_or_fail(led: Ledger, out: Path) -> None:
    led.write(out)
    if not led.balanced:
        raise GateError(f"{out}/ledger.json: ledger does not balance for {led.unbalanced()}")


# ---------------------------------------------------------------------------------------------------------------
# provenance


def data_version(splits_dir: Path) -> dict[str, Any]:
    """Version of the data a model saw: sha256 of the DatasetDict folder, and the card's version line if any."""
    splits_dir = Path(splits_dir)
    out: dict[str, Any] = {"dataset_sha256": sha256_tree(dataset_dir(splits_dir))}
    mpath = splits_dir / "metrics.json"
    if mpath.is_file():
        with contextlib.suppress(OSError, ValueError, AttributeError):
            v = read_json(mpath).get("data_version")
            if isinstance(v, (str, int)):
                out["split_data_version"] = str(v)
    card = splits_dir / "README.md"
    if card.is_file():
        out["card_sha256"] = sha256_file(card)
        for line in card.read_text(encoding="utf-8", errors="replace").splitlines()[:80]:
            m = re.match(r"^[-*\s]*(?:data(?:set)?\s+)?version:\s*`?([^`\s]+)`?", line.strip(), flags=re.I)
            if m:
                out["card_version"] = m.group(1)[:100]
                break
    return out


MODEL_LIBRARIES = ("torch", "transformers", "peft", "datasets", "onnx", "onnxruntime", "scikit-learn", "numpy")


def git_info() -> dict[str, Any]:
    """The code's git state, from pipeline.provenance (git and library provenance live in one place)."""
    g = provenance.git_info()
    return {"git_sha": g["git_sha"] or "unknown", "git_dirty": g["git_dirty"]}


def library_versions() -> dict[str, str]:
    return {k: v or "absent" for k, v in provenance.library_versions(MODEL_LIBRARIES).items() if k != "python"}


def dumps_stable(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
