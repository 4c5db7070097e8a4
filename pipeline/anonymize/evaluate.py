"""Evaluation of the anonymize stage: the demo's ground truth (canaries, labelled PII values) checked against this
run's output, the residual risk measured on the shipped labelled evaluation set, and the re-identification risk
(k-anonymity) of the quasi-identifiers that survive. Nothing here writes or logs a value: only counts and types."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

from pipeline.ids import record_id
from pipeline.anonymize.gate import ValueMatcher, segments
from pipeline.errors import ConfigError
from pipeline.stats import wilson_lower  # noqa: F401 - also this module's API (residual risk)


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what} ({type(exc).__name__})") from None


_GT_KEYS = ("source", "key", "value")


def _load_ground_truth(folder: Optional[Path]) -> tuple[list[tuple[str, str]], list[dict]]:
    """(canaries as (type, value), pii spans) from a demo ground-truth folder; ([], []) without one."""
    if folder is None:
        return [], []
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: ground-truth folder not found")
    canaries: list[tuple[str, str]] = []
    cpath = folder / "canaries.json"
    if cpath.exists():
        data = _read_json(cpath, "canaries")
        if not isinstance(data, list):
            raise ConfigError(f"{cpath}: expected a JSON list of {{type, value}}")
        for i, c in enumerate(data):
            if not isinstance(c, dict) or not isinstance(c.get("value"), str):
                raise ConfigError(f"{cpath}: item {i}: expected {{type, value}} with a string value")
            canaries.append((str(c.get("type") or "CANARY"), c["value"]))
    spans: list[dict] = []
    spath = folder / "pii_spans.jsonl"
    if spath.exists():
        with open(spath, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    raise ConfigError(f"{spath}: line {lineno}: invalid JSON") from None
                if not isinstance(obj, dict) or not all(isinstance(obj.get(k), str) for k in _GT_KEYS):
                    raise ConfigError(f"{spath}: line {lineno}: expected source, key, value strings")
                spans.append(obj)
    return canaries, spans


def record_id_for(source: str, key: str) -> str:
    """The ingest stage's record id (docs/data_contracts.md): pipeline.ids.record_id."""
    return record_id(source, key)


def _digest(value: str) -> bytes:
    import hashlib

    return hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class GroundTruthCheck:
    """Counts the demo's labelled PII values (those of records in this batch) that survive in the output cells."""

    def __init__(self, spans: list[dict], record_ids: set[str]) -> None:
        self.matcher, self.checked, self.unchecked, self.records = ValueMatcher(), 0, 0, 0
        values: dict[tuple[str, str], None] = {}
        self.by_type_total: Counter = Counter()
        if spans:
            recs_hit = set()
            for sp in spans:
                rid = record_id_for(sp["source"], sp["key"])
                if rid in record_ids:
                    recs_hit.add(rid)
                    values.setdefault((str(sp.get("type") or "PII"), sp["value"]), None)
            self.records = len(recs_hit)
            for typ, val in values:
                if self.matcher.add(typ, val):
                    self.checked += 1
                    self.by_type_total[typ] += 1
                else:
                    self.unchecked += 1
        self.surviving: Counter = Counter()
        self.distinct: set[tuple[str, bytes]] = set()  # (type, digest of the surviving value): counts only

    def scan(self, cells) -> None:
        if not self.checked:
            return
        for _, v, _ in cells:
            for off, piece in segments(v):
                for s, e, t in self.matcher.find(piece):
                    self.surviving[t] += 1
                    self.distinct.add((t, _digest(piece[s:e].casefold())))

    def surviving_distinct_by_type(self) -> Counter:
        return Counter(t for t, _ in self.distinct)

    def metrics(self, canaries_checked: int) -> dict[str, Any]:
        return {
            "records_in_batch": self.records,
            "values_checked": self.checked,
            "values_too_short_to_check": self.unchecked,
            "values_surviving": len(self.distinct),
            "occurrences_surviving": sum(self.surviving.values()),
            "surviving_by_type": dict(sorted(self.surviving.items())),
            "canaries_checked": canaries_checked,
        }


# public names
load_ground_truth = _load_ground_truth


# ================================================================================ residual risk (measured)

EVAL_SET_DIR = Path(__file__).with_name("eval_set")
# types the leakage gate re-detects by itself (checksummed / structured patterns); the others it only catches when
# the same value was found elsewhere in the batch (its dictionary) or planted as a canary
GATE_PATTERN_TYPES = ("CREDIT_CARD", "IBAN_CODE", "US_SSN", "ABA_ROUTING", "EMAIL_ADDRESS", "PHONE_NUMBER")
COVER = 0.9  # a gold span is caught when replaced spans cover at least this share of its characters


def _caught(start: int, end: int, pred: list[tuple[int, int]]) -> bool:
    need = end - start
    if need <= 0:
        return True
    cov = 0
    for s, e in pred:
        a, b = max(s, start), min(e, end)
        if b > a:
            cov += b - a
    return cov >= COVER * need  # predicted spans are disjoint (resolved), so overlaps are not double counted


def read_eval_set(path: Path) -> tuple[list[dict], str]:
    """(rows, sha256 prefix) of a labelled JSONL set ({"text", "spans": [{"type", "start", "end"}]} per line)."""
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the PII evaluation set ({type(exc).__name__})") from None
    rows = []
    for lineno, line in enumerate(blob.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            text, spans = obj["text"], obj["spans"]
            for sp in spans:
                if not (0 <= int(sp["start"]) < int(sp["end"]) <= len(text)):
                    raise ValueError
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: line {lineno}: expected {{text, spans: [{{type, start, end}}]}}") from None
        rows.append(obj)
    return rows, hashlib.sha256(blob).hexdigest()[:16]


def measure_recall(detector, rows: list[dict], keep_types: set[str], batch: int = 256) -> dict[str, dict]:
    """Per gold type: n, caught, recall, ci_low (95% Wilson), type-agnostic (any replaced span counts), detector
    spans only (the batch dictionary's sweep adds recall in a real run and is left out: a conservative figure)."""
    n: Counter = Counter()
    k: Counter = Counter()
    for i in range(0, len(rows), batch):
        chunk = rows[i : i + batch]
        try:
            preds = detector.detect_batch([r["text"] for r in chunk], ner=True)
        except Exception:  # noqa: BLE001 - one by one; a text whose analysis throws counts as all missed
            preds = []
            for r in chunk:
                try:
                    preds.append(detector.detect_batch([r["text"]], ner=True)[0])
                except Exception:  # noqa: BLE001
                    preds.append([])
        for r, spans in zip(chunk, preds):
            pred = [(int(s.start), int(s.end)) for s in spans if str(s.type) not in keep_types]
            for g in r["spans"]:
                t = str(g["type"])
                n[t] += 1
                k[t] += _caught(int(g["start"]), int(g["end"]), pred)
    return {
        t: {"n": n[t], "caught": k[t], "recall": round(k[t] / n[t], 4), "ci_low": round(wilson_lower(k[t], n[t]), 4)}
        for t in sorted(n)
    }


def _cache_dir() -> Path:
    import os

    root = os.environ.get("FRAUDSLM_CACHE_DIR") or Path.home() / ".cache" / "fraudslm"
    return Path(root) / "pii_eval"


def detector_digest(cfg, factory_name: str, eval_sha: str, keep_types: set[str] = frozenset()) -> str:
    """What the measured recall depends on: the evaluation set, the detection settings and code, the registry file,
    the library versions. A change in any of them measures again."""
    from importlib import metadata

    here = Path(__file__).parent
    h = hashlib.sha256()
    h.update(eval_sha.encode())
    h.update(factory_name.encode())
    det_cfg = cfg.model_dump(mode="json", include={"spacy_model", "pii_model", "score_threshold", "entities",
                                                   "max_chunk_chars"})
    from pipeline.anonymize.learned.recognizer import model_digest

    det_cfg["pii_model_sha256"] = model_digest(getattr(cfg, "pii_model", None))  # retrained model: measure again
    det_cfg["keep_types"] = sorted(keep_types)  # spans of these types are not replaced, so they do not count
    h.update(json.dumps(det_cfg, sort_keys=True).encode())
    for name in ("detect.py", "recognizers.py", "validators.py", "offline.py", "learned/recognizer.py"):
        p = here / name
        if p.exists():
            h.update(p.read_bytes())
    reg = Path(cfg.registry)
    if not reg.is_absolute():
        from pipeline.config import REPO_ROOT

        reg = reg if reg.exists() else REPO_ROOT / reg
    if reg.exists():
        h.update(reg.read_bytes())
    for lib in ("presidio-analyzer", "spacy", cfg.spacy_model.replace("_", "-")):
        try:
            h.update(f"{lib}={metadata.version(lib)}".encode())
        except metadata.PackageNotFoundError:
            h.update(f"{lib}=?".encode())
    return h.hexdigest()[:24]


def measured_recall(cfg, get_detector, factory_name: str, keep_types: set[str]) -> dict[str, Any]:
    """Recall per type on the shipped evaluation set, measured with this run's detector (cached by digest)."""
    path = Path(cfg.eval_set)
    if not path.is_absolute() and not path.exists():
        from pipeline.config import REPO_ROOT

        path = REPO_ROOT / path
    rows, sha = read_eval_set(path)
    digest = detector_digest(cfg, factory_name, sha, keep_types)
    cache = _cache_dir() / f"{digest}.json"
    try:
        cached = json.loads(cache.read_text(encoding="utf-8"))
        if cached.get("digest") == digest:
            return cached
    except (OSError, ValueError):
        pass
    per_type = measure_recall(get_detector(), rows, keep_types)
    res = {"digest": digest, "eval_set": {"path": path.name, "sha256": sha, "texts": len(rows)}, "per_type": per_type}
    try:
        from pipeline.io import write_json

        cache.parent.mkdir(parents=True, exist_ok=True)
        write_json(cache, res)
    except OSError:
        pass  # a read-only home only costs time
    return res


def residual_risk(cfg, measured: dict[str, Any], text_entities: Counter, n_records: int,
                  truth: Optional["GroundTruthCheck"] = None) -> dict[str, Any]:
    """`residual_risk` of metrics.json: measured recall per type against its target, and the leaks to expect in this
    run's input (entities found per type / recall x miss rate, per 10,000 records)."""
    targets = cfg.recall_targets
    per_type: dict[str, Any] = {}
    leaks: dict[str, float] = {}
    leaks_upper: dict[str, float] = {}
    scale = 10_000 / n_records if n_records else 0.0
    for t, m in measured["per_type"].items():
        target = targets.get(t)
        row = {"recall": m["recall"], "ci_low": m["ci_low"], "n": m["n"], "target": target,
               "meets_target": None if target is None else bool(m["ci_low"] >= target),
               "gate_sees": t in GATE_PATTERN_TYPES}
        per_type[t] = row
        found = text_entities.get(t, 0)
        for out, r in ((leaks, m["recall"]), (leaks_upper, m["ci_low"])):
            est_missed = found * (1 - r) / r if r > 0 else float(found)
            out[t] = round(est_missed * scale, 3)
    below = sorted(t for t, r in per_type.items() if r["meets_target"] is False)
    untested = sorted(t for t in targets if t not in per_type)
    out: dict[str, Any] = {
        "eval_set": measured["eval_set"],
        "method": "type-agnostic: a labelled span counts as caught when replaced spans cover >= 90% of its "
                  "characters; detector only (the batch dictionary sweep is not counted); 95% Wilson lower bound",
        "per_type": per_type,
        "expected_leaks_per_10k_records": round(sum(leaks.values()), 3),
        "expected_leaks_per_10k_records_at_ci_low": round(sum(leaks_upper.values()), 3),
        "expected_leaks_per_10k_records_by_type": dict(sorted(leaks.items())),
        "expected_leaks_per_10k_records_at_ci_low_by_type": dict(sorted(leaks_upper.items())),
        "below_target": below,
        "targets_without_measurement": untested,
        "meets_targets": not below,
        "gate_visible_types": list(GATE_PATTERN_TYPES),
        "gate_invisible_types": sorted(t for t in set(per_type) | set(targets) if t not in GATE_PATTERN_TYPES),
    }
    if truth is not None and truth.checked:
        surv = truth.surviving_distinct_by_type()
        out["this_run_ground_truth"] = {
            t: {"values": n, "surviving": surv.get(t, 0), "recall": round(1 - surv.get(t, 0) / n, 4)}
            for t, n in sorted(truth.by_type_total.items())
        }
    return out


# ============================================================================ re-identification (k-anonymity)

def _decade(v: Optional[str]) -> Optional[str]:
    return f"{v[:3]}0s" if isinstance(v, str) and len(v) == 4 and v.isdigit() else None


def _ip16(v: Optional[str]) -> Optional[str]:
    if not isinstance(v, str) or "." not in v:
        return None
    parts = v.split("/")[0].split(".")
    return ".".join(parts[:2]) + ".0.0/16" if len(parts) == 4 else None


def _postcode_area(v: Optional[str]) -> Optional[str]:
    if not isinstance(v, str) or not v:
        return None
    letters = "".join(ch for ch in v if ch.isalpha())
    return letters[:2] if letters else v[:2]


# generalisation ladder per column (each step coarser); the last step of every column is suppression (null)
LADDERS: dict[str, tuple] = {
    "date_of_birth": (("decade", _decade),),
    "ip_address": (("/16", _ip16),),
    "postcode": (("area", _postcode_area),),
}


def _k_per_record(frame, cols: list[str], person_col: Optional[str]):
    """k of each record: distinct people (or records without a person column) sharing its value combination.

    Missing values (None, NaN) form one value of their own; the combination is factorised column by column into
    integer codes, so each call costs a few vectorised passes instead of a pandas group-by."""
    import numpy as np
    import pandas as pd

    n = len(frame)
    if not cols or n == 0:
        return pd.Series(n, index=frame.index, dtype="int64")

    def codes(col: str) -> tuple[np.ndarray, int]:
        c, uniq = pd.factorize(frame[col], use_na_sentinel=False)
        return c.astype(np.int64), max(1, len(uniq))

    key, _ = codes(cols[0])
    for c in cols[1:]:
        nxt, m = codes(c)
        key = pd.factorize(key * m + nxt)[0].astype(np.int64)  # stays < n: never overflows
    n_groups = int(key.max()) + 1
    if person_col:
        people, m = codes(person_col)
        pairs = np.unique(key * m + people)  # distinct (combination, person)
        per_group = np.bincount(pairs // m, minlength=n_groups)
    else:
        per_group = np.bincount(key, minlength=n_groups)
    return pd.Series(per_group[key].astype("int64"), index=frame.index)


def _share_below(frame, cols, person_col, k_target) -> float:
    if len(frame) == 0:
        return 0.0
    return float((_k_per_record(frame, cols, person_col) < k_target).mean())


def _objective(frame, cols, person_col, k_target) -> tuple[float, float]:
    """(share of records below k, mean shortfall k_target - k over them): the shortfall ranks steps that do not
    yet move a record over the target but bring it closer (the greedy search does not stall on a plateau)."""
    if len(frame) == 0:
        return 0.0, 0.0
    k = _k_per_record(frame, cols, person_col)
    return float((k < k_target).mean()), float((k_target - k).clip(lower=0).mean())


def reidentification(frame, quasi: list[str], k_target: int, person_col: Optional[str] = "group_id",
                     max_suppressed_share: float = 0.05) -> tuple[dict[str, Any], Any]:
    """k-anonymity of the surviving quasi-identifiers: (metrics, frame after the offered policy).

    The offered policy is greedy: at each step the one generalisation (ladder step or column suppression) that
    lowers the share of records below k the most; it stops when the remaining share can be suppressed (those
    records' quasi-identifiers set to null) within `max_suppressed_share`."""
    from itertools import combinations

    cols = [c for c in quasi if c in frame.columns]
    person_col = person_col if person_col in frame.columns else None
    n = len(frame)
    if not cols or n == 0:
        return {"quasi_identifiers": cols, "k_target": k_target, "records": n, "min_k": None,
                "share_below_k": 0.0, "unit": "person" if person_col else "record",
                "policy": {"actions": {}, "steps": [], "suppress_records": 0, "suppress_share": 0.0,
                           "columns_kept": cols, "reaches_target": True,
                           "max_suppressed_share": max_suppressed_share}}, frame
    k = _k_per_record(frame, cols, person_col)
    share = float((k < k_target).mean())
    # the smallest combination (up to 3 columns) that already puts at least half as many records below k
    driver, driver_share = list(cols), share
    if share > 0:
        found = False
        for size in range(1, min(3, len(cols)) + 1):
            best = max(((_share_below(frame, list(c), person_col, k_target), list(c))
                        for c in combinations(cols, size)), key=lambda x: x[0])
            if best[0] >= 0.5 * share:
                driver_share, driver = best
                found = True
                break
        if not found:
            driver, driver_share = list(cols), share
    # offered policy
    work = frame[cols + ([person_col] if person_col else [])].copy()
    level = {c: 0 for c in cols}
    live = list(cols)
    steps: list[dict[str, Any]] = []
    cur = share
    while cur > max_suppressed_share and live:
        best = None
        for c in live:
            ladder = LADDERS.get(c, ())
            if level[c] < len(ladder):
                name, fn = ladder[level[c]]
                trial = work.copy()
                trial[c] = trial[c].map(lambda v, fn=fn: fn(v) if v is not None and v == v else None)
            else:
                name, trial = "suppress", work.drop(columns=[c])
            rest = [x for x in live if x != c] if name == "suppress" else live
            obj = (*_objective(trial, rest, person_col, k_target), name == "suppress")
            if best is None or obj < best[0]:
                best = (obj, c, name, trial)
        (s, _, _), c, name, trial = best
        work = trial
        if name == "suppress":
            live.remove(c)
        else:
            level[c] += 1
        steps.append({"column": c, "action": name, "share_below_k_after": round(s, 4)})
        cur = s
    # prune: give back every suppressed column that the target does not need (greedy steps taken on a plateau)
    for c in [st["column"] for st in steps if st["action"] == "suppress"]:
        trial = work.copy()
        trial[c] = frame[c]
        if _share_below(trial, live + [c], person_col, k_target) <= max_suppressed_share:
            work, live = trial, live + [c]
            level[c] = 0
            steps = [st for st in steps if st["column"] != c]
    k_after = _k_per_record(work, live, person_col)
    suppress_rows = k_after < k_target
    actions: dict[str, str] = {}
    for st in steps:
        actions[st["column"]] = st["action"]  # the last (coarsest) step per column
    policy = {
        "actions": actions,
        "steps": steps,
        "suppress_records": int(suppress_rows.sum()),
        "suppress_share": round(float(suppress_rows.mean()), 4) if n else 0.0,
        "columns_kept": [c for c in cols if c in live],
        "reaches_target": True,
        "max_suppressed_share": max_suppressed_share,
    }
    after = frame.copy()
    for c in cols:
        if c not in live:
            after[c] = None
        elif c in work:
            after[c] = work[c]
    if suppress_rows.any():
        for c in live:
            after.loc[suppress_rows.values, c] = None
    metrics = {
        "quasi_identifiers": cols,
        "unit": "person" if person_col else "record",
        "k_target": k_target,
        "records": n,
        "min_k": int(k.min()),
        "median_k": float(k.median()),
        "share_below_k": round(share, 4),
        "records_below_k": int((k < k_target).sum()),
        "driving_columns": driver,
        "driving_columns_share_below_k": round(driver_share, 4),
        "policy": policy,
    }
    return metrics, after
