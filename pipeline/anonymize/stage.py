"""`fraudslm anonymize`: detect and replace PII in the record table, gate the result, publish atomically.

Flow (outputs are staged in a private temp folder and reach `out` only when the leakage gate passes):

1. **detect** (parallel): the input is read in partitions of `anonymize.partition_rows` records; each partition's
   distinct scanned texts are sent to a worker (in-process, a local process pool of `workers` processes, or a Dask
   cluster), whose detector is built once per process. Workers return spans only (positions, types, scores).
   A text whose analysis throws is retried alone; if it still throws, its records are quarantined.
   Meanwhile the driver collects the batch dictionary of original PII values: every value the detector found plus
   the values of the PII columns (names, e-mails, cards ... from `anonymize.columns`) and the customer ids.
2. **replace + gate** (driver, streaming): each partition is read again; detected spans are united with every
   occurrence of a dictionary value (a name found in one record is replaced in all of them), operators are
   applied in one pass per distinct text, column policies and signal columns are computed, and every output
   record goes through the leakage gate before its partition is appended to the staged Parquet files.
3. **publish**: each staged file is moved into `out` atomically, then gate.json, ledger.json, metrics.json. A
   failing gate (or an unbalanced ledger) writes the reports only, removes data files of an earlier run from
   `out`, and exits 1.

No raw value is logged, written or put in an exception message; quarantine rows carry the reason only.
Outputs depend only on the input, params and key: they are byte-identical across executors and worker counts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import pickle
import shutil
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.anonymize.columns import ColumnAction, apply_column, is_text_type, output_type, plan_columns
from pipeline.anonymize.gate import LeakageGate, ValueMatcher, segments
from pipeline.anonymize.pseudonym import (
    SIGNALS,
    Pseudonymizer,
    Replacer,
    load_encryptor,
    load_key,
    rules_from_params,
)
from pipeline.errors import ConfigError, FraudSLMError, GateError
from pipeline.io import atomic_path, write_json
from pipeline.ledger import Ledger

log = logging.getLogger(__name__)

REQUIRED = ("record_id", "source", "text")
SIGNAL_COLUMNS = tuple(SIGNALS)
ENTITY_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("field", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("start", pa.int32(), nullable=False),
        pa.field("end", pa.int32(), nullable=False),
        pa.field("score", pa.float32(), nullable=False),
        pa.field("operator", pa.string(), nullable=False),
        pa.field("recognizer", pa.string(), nullable=False),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)
DICTIONARY_RECOGNIZER = "batch_dictionary"
NER_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
COLUMN_RECOGNIZER = "column_policy"

SpanT = tuple[str, int, int, float, str]  # type, start, end, score, recognizer
DetectorFactory = Callable[[Any], Any]


# ====================================================================================== worker side


def _default_factory(cfg):
    from pipeline.anonymize.detect import build_detector

    return build_detector(cfg)


_DETECTORS: dict[str, Any] = {}  # per process: (params, factory) -> detector or the exception building it raised


def _detector(cfg_json: str, factory: Optional[DetectorFactory]):
    from pipeline.config import AnonymizeParams

    fac = factory or _default_factory
    key = f"{getattr(fac, '__module__', '')}.{getattr(fac, '__qualname__', repr(fac))}|{cfg_json}"
    det = _DETECTORS.get(key)
    if det is None:
        try:
            det = fac(AnonymizeParams.model_validate_json(cfg_json))
        except FraudSLMError as exc:
            det = exc
        except Exception as exc:  # noqa: BLE001 - reported without its message (could hold a value)
            det = ConfigError(f"cannot build the PII detector ({type(exc).__name__})")
        _DETECTORS[key] = det
    if isinstance(det, Exception):
        raise det
    return det


def _init_worker(cfg_json: str, factory: Optional[DetectorFactory]) -> None:
    """Process-pool initializer: build the detector once (a failure is kept and raised by the first job)."""
    try:
        _detector(cfg_json, factory)
    except FraudSLMError:
        pass


def _valid(spans, text: str) -> list[SpanT]:
    out = []
    n = len(text)
    for s in spans:
        start, end = int(s.start), int(s.end)
        if not (0 <= start < end <= n):
            raise ValueError("span outside its text")
        out.append((str(s.type), start, end, float(s.score), str(s.recognizer)))
    return out


def _detect_group(det, texts: list[str], ner: bool) -> tuple[list[Optional[list[SpanT]]], dict[int, str]]:
    """Spans per text; a text whose analysis throws (even alone) gets None and a reason (exception type only)."""
    if not texts:
        return [], {}
    try:
        res = det.detect_batch(texts, ner=ner)
        if len(res) != len(texts):
            raise ValueError("detector returned a wrong number of results")
        return [_valid(r, t) for r, t in zip(res, texts)], {}
    except FraudSLMError:
        raise
    except Exception:  # noqa: BLE001 - isolate the failing text(s) below
        pass
    out: list[Optional[list[SpanT]]] = []
    errors: dict[int, str] = {}
    for i, t in enumerate(texts):
        try:
            out.append(_valid(det.detect_batch([t], ner=ner)[0], t))
        except FraudSLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - fail closed: the record is quarantined, the message dropped
            out.append(None)
            errors[i] = f"detect_failed:{type(exc).__name__}"
    return out, errors


def detect_job(job: "_Job", cfg_json: str, factory: Optional[DetectorFactory]) -> "_JobResult":
    """Runs in a worker: detection for one partition's distinct texts. Returns positions only, never values."""
    det = _detector(cfg_json, factory)
    ner_spans, ner_err = _detect_group(det, job.ner_texts, True)
    pat_spans, pat_err = _detect_group(det, job.pattern_texts, False)
    return _JobResult(job.index, ner_spans, ner_err, pat_spans, pat_err)


@dataclass
class _Job:
    index: int
    ner_texts: list[str]
    pattern_texts: list[str]


@dataclass
class _JobResult:
    index: int
    ner_spans: list[Optional[list[SpanT]]]
    ner_errors: dict[int, str]
    pattern_spans: list[Optional[list[SpanT]]]
    pattern_errors: dict[int, str]


# ===================================================================================== executors


class _Done:
    def __init__(self, value=None, exc: Optional[BaseException] = None) -> None:
        self._value, self._exc = value, exc

    def result(self):
        if self._exc is not None:
            raise self._exc
        return self._value


class _InProcess:
    name = "in-process"

    def __init__(self, cfg_json: str, factory) -> None:
        self.cfg_json, self.factory = cfg_json, factory
        self.slots = 1

    def submit(self, job: _Job):
        try:
            return _Done(detect_job(job, self.cfg_json, self.factory))
        except BaseException as exc:  # noqa: BLE001 - re-raised by result()
            return _Done(exc=exc)

    def close(self) -> None:
        pass


def _start_method() -> str:
    """fork when it is safe (Linux, this process runs a single thread): workers start at once and inherit a detector
    this process already built; spawn otherwise (threads + fork can deadlock)."""
    import sys
    import threading

    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "spawn"


class _ProcessPool:
    name = "local-pool"

    def __init__(self, cfg_json: str, factory, workers: int) -> None:
        from concurrent.futures import ProcessPoolExecutor

        self.cfg_json, self.factory = cfg_json, factory
        self.slots = 2 * workers
        method = _start_method()
        if method == "fork":
            # build (or reuse) the detector here once: forked workers inherit it instead of importing and loading
            # the model each; fall back to spawn if building it started a thread
            _detector(cfg_json, factory)
            method = _start_method()
        self.pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context(method),
            initializer=_init_worker,
            initargs=(cfg_json, factory),
        )

    def submit(self, job: _Job):
        return self.pool.submit(detect_job, job, self.cfg_json, self.factory)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


class _Dask:
    name = "dask"

    def __init__(self, cfg_json: str, factory, workers: int, address: Optional[str]) -> None:
        from dask.distributed import Client, LocalCluster

        self.cfg_json, self.factory = cfg_json, factory
        self.cluster = None
        try:
            if address:
                self.client = Client(address, timeout="30s")
            else:
                self.cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address="127.0.0.1:0",  # loopback, any free port
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
        except OSError as exc:
            if self.cluster is not None:
                self.cluster.close()
            what = type(exc).__name__
            raise ConfigError(f"anonymize.dask_address: cannot reach the Dask scheduler ({what})") from None
        n = len(self.client.scheduler_info().get("workers", {})) or workers
        self.slots = 2 * n

    def submit(self, job: _Job):
        return self.client.submit(detect_job, job, self.cfg_json, self.factory, pure=False)

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


def _make_executor(cfg, cfg_json: str, factory, n_partitions: int):
    if cfg.executor == "dask":
        return _Dask(cfg_json, factory, cfg.workers, cfg.dask_address)
    if cfg.workers <= 1 or n_partitions <= 1:
        return _InProcess(cfg_json, factory)
    return _ProcessPool(cfg_json, factory, min(cfg.workers, n_partitions))


# ====================================================================================== driver side


@dataclass
class _TextResult:
    new_text: Optional[str]
    entities: list[tuple[str, int, int, float, str, str]]  # type, start, end, score, operator, recognizer
    error: Optional[str] = None


def _scan_texts(rows: dict[str, list], plan: list[ColumnAction]) -> tuple[dict[str, int], dict[str, int]]:
    """Distinct texts of the scanned columns: (NER texts -> index, pattern-only texts -> index). Deterministic."""
    ner: dict[str, int] = {}
    pat: dict[str, int] = {}
    for a in plan:
        if a.action != "scan":
            continue
        target = ner if a.ner else pat
        for v in rows[a.name]:
            if v is None:
                continue
            s = v if isinstance(v, str) else str(v)
            if s and s not in target:
                target[s] = len(target)
    return ner, pat


def _merge(spans: list[SpanT]) -> list[SpanT]:
    """Union of overlapping spans (detector spans are disjoint; dictionary hits may overlap them)."""
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s[1], -s[2]))
    out = [spans[0]]
    for s in spans[1:]:
        t, a, b, sc, rec = out[-1]
        if s[1] < b:
            if s[2] > b:
                rec2 = rec if s[4] == rec else f"{rec}+{s[4]}"
                out[-1] = (t, a, s[2], max(sc, s[3]), rec2)
        else:
            out.append(s)
    return out


class _Anonymizer:
    """Driver-side replacement: operators per distinct text, column policies, signals."""

    def __init__(self, replacer: Replacer, dictionary: ValueMatcher, plan: list[ColumnAction]) -> None:
        self.replacer = replacer
        self.dictionary = dictionary
        self.plan = plan
        self.sweep_hits = 0

    def text(self, text: str, spans: Optional[list[SpanT]]) -> _TextResult:
        if spans is None:
            raise AssertionError("unreachable")
        extra = [(t, s, e, 1.0, DICTIONARY_RECOGNIZER) for s, e, t in self.dictionary.find(text)]
        if extra:
            covered = {(s[1], s[2]) for s in spans}
            self.sweep_hits += sum(1 for x in extra if (x[1], x[2]) not in covered)
            # a span kept by policy (e.g. a URL) never shields a known PII value inside it
            keep = self.replacer.keeps
            if keep and any(s[0] in keep for s in spans):
                spans = [s for s in spans if s[0] not in keep or not any(x[1] < s[2] and s[1] < x[2] for x in extra)]
        merged = _merge(list(spans) + extra)
        parts: list[str] = []
        ents = []
        pos = 0
        for t, s, e, score, rec in merged:
            repl, op = self.replacer.replace(t, text[s:e])
            parts.append(text[pos:s])
            parts.append(repl)
            pos = e
            ents.append((t, s, e, score, op, rec))
        parts.append(text[pos:])
        return _TextResult("".join(parts), ents)


def _iter_partitions(path: Path, rows: int) -> Iterator[dict[str, list]]:
    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=rows):
        yield batch.to_pydict()


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
    """The ingest stage's record id (docs/data_contracts.md)."""
    return hashlib.sha256(f"{source}\x1f{key}".encode("utf-8")).hexdigest()[:16]


def _output_schema(in_schema: pa.Schema, plan: list[ColumnAction]) -> pa.Schema:
    fields = []
    for f, a in zip(in_schema, plan):
        t = output_type(a, f.type)
        if t is None:
            continue
        nullable = f.nullable or a.action in ("pseudonymize", "generalize")
        fields.append(pa.field(f.name, t, nullable=nullable))
    names = {f.name for f in fields}
    for col in SIGNAL_COLUMNS:
        if col in names:
            raise ConfigError(f"input column {col!r} collides with a signal column of the anonymize stage")
        fields.append(pa.field(col, pa.string(), nullable=True))
    fields.append(pa.field("n_entities", pa.int32(), nullable=False))
    return pa.schema(fields)


def run_anonymize(
    inp: Path,
    out: Path,
    params,
    ground_truth: Optional[Path] = None,
    *,
    detector_factory: Optional[DetectorFactory] = None,
) -> dict[str, Any]:
    """Anonymize `inp/records.parquet` into `out` (see module doc). Returns the metrics.

    Raises ConfigError (exit 2) for a missing key / input / bad policy, GateError (exit 1) when the leakage gate
    or the ledger fails; in both cases no data is published. `detector_factory(AnonymizeParams) -> detector`
    replaces the detector (tests, fault injection); it must be picklable for the process pool and Dask.
    """
    t0 = time.perf_counter()
    inp, out = Path(inp), Path(out)
    cfg = params.anonymize
    key = load_key()
    rules, default_rule = rules_from_params(cfg.operators, cfg.default_operator)
    needs_enc = any(r.operator == "encrypt" for r in [default_rule, *rules.values()])
    encryptor = load_encryptor(required=needs_enc)
    pseudonymizer = Pseudonymizer(key)
    del key
    replacer = Replacer(rules, default_rule, pseudonymizer, encryptor if needs_enc else None)
    keep_types = {t for t, r in rules.items() if r.operator == "keep"}

    src = inp / "records.parquet" if inp.is_dir() else inp
    if not src.is_file():
        raise ConfigError(f"{src}: input record table not found (run `fraudslm ingest` first)")
    try:
        pfile = pq.ParquetFile(src)
    except Exception as exc:  # noqa: BLE001 - corrupt file
        raise ConfigError(f"{src}: not a readable Parquet file ({type(exc).__name__})") from None
    in_schema = pfile.schema_arrow
    n_rows = pfile.metadata.num_rows
    missing = [c for c in REQUIRED if c not in in_schema.names]
    if missing:
        raise ConfigError(f"{src}: missing column(s) {', '.join(missing)}")
    plan = plan_columns(in_schema, cfg)
    out_schema = _output_schema(in_schema, plan).remove_metadata()
    canaries, gt_spans = _load_ground_truth(ground_truth)

    cfg_json = cfg.model_dump_json()
    n_parts = max(1, -(-n_rows // cfg.partition_rows))
    ledger = Ledger("anonymize")
    dictionary = ValueMatcher()
    record_ids: set[str] = set()
    metrics_counts: dict[str, Any] = {"ner_texts": 0, "pattern_texts": 0}

    def add_structured(rows: dict[str, list]) -> None:
        for a in plan:
            if a.holds_pii_values and a.entity_type and a.entity_type not in keep_types:
                for v in rows[a.name]:
                    if v is not None:
                        dictionary.add(a.entity_type, v if isinstance(v, str) else str(v))

    def add_detected(job: _Job, res: _JobResult) -> None:
        for texts, spans in ((job.ner_texts, res.ner_spans), (job.pattern_texts, res.pattern_spans)):
            for t, ss in zip(texts, spans):
                for typ, s, e, _, _ in ss or ():
                    if typ not in keep_types:
                        v = t[s:e]
                        # one-word NER hits ('Good', 'Payee') are too often wrong to replace everywhere
                        if typ in NER_TYPES and len(v.split()) < 2:
                            continue
                        dictionary.add(typ, v)

    with tempfile.TemporaryDirectory(prefix="fraudslm-anon-") as work_s:
        work = Path(work_s)
        # ---------------------------------------------------------------- pass 1: detection (parallel)
        executor = _make_executor(cfg, cfg_json, detector_factory, n_parts)
        try:
            inflight: deque[tuple[_Job, Any]] = deque()

            def drain_one() -> None:
                job, fut = inflight.popleft()
                res = fut.result()
                add_detected(job, res)
                with open(work / f"spans_{job.index:06d}.pkl", "wb") as fh:
                    pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)

            for i, rows in enumerate(_iter_partitions(src, cfg.partition_rows)):
                record_ids.update(rows["record_id"])
                add_structured(rows)
                ner, pat = _scan_texts(rows, plan)
                metrics_counts["ner_texts"] += len(ner)
                metrics_counts["pattern_texts"] += len(pat)
                job = _Job(i, list(ner), list(pat))
                while len(inflight) >= executor.slots:
                    drain_one()
                inflight.append((job, executor.submit(job)))
            while inflight:
                drain_one()
        finally:
            executor.close()
        t_detect = time.perf_counter() - t0

        # ------------------------------------------------------- pass 2: replace + gate (driver, streaming)
        gt_matcher, gt_checked, gt_unchecked, gt_records = ValueMatcher(), 0, 0, 0
        gt_values: dict[tuple[str, str], None] = {}
        if gt_spans:
            recs_hit = set()
            for sp in gt_spans:
                rid = record_id_for(sp["source"], sp["key"])
                if rid in record_ids:
                    recs_hit.add(rid)
                    gt_values.setdefault((str(sp.get("type") or "PII"), sp["value"]), None)
            gt_records = len(recs_hit)
            for typ, val in gt_values:
                if gt_matcher.add(typ, val):
                    gt_checked += 1
                else:
                    gt_unchecked += 1
        gt_surviving: Counter = Counter()
        gt_distinct: set[tuple[str, str]] = set()

        gate = LeakageGate(cfg.gate.min_score, originals=dictionary, canaries=canaries, allowed_types=keep_types)
        anon = _Anonymizer(replacer, dictionary, plan)
        ent_by_type: Counter = Counter()
        ent_by_source: dict[str, Counter] = defaultdict(Counter)
        ent_by_field: Counter = Counter()
        ent_by_operator: Counter = Counter()
        signal_counts: Counter = Counter()
        quarantine: list[tuple[str, str, str]] = []
        scan_cols = [a.name for a in plan if a.action == "scan"]
        out_names = out_schema.names
        string_out = [f.name for f in out_schema if is_text_type(f.type) or pa.types.is_integer(f.type)]
        string_out = [c for c in string_out if c not in ("record_id", "dup_cluster", "n_entities", "label")]

        stage_dir = work / "stage"
        stage_dir.mkdir()
        rec_writer = pq.ParquetWriter(stage_dir / "records.parquet", out_schema, compression="zstd")
        ent_writer = pq.ParquetWriter(stage_dir / "entities.parquet", ENTITY_SCHEMA, compression="zstd")
        try:
            for i, rows in enumerate(_iter_partitions(src, cfg.partition_rows)):
                with open(work / f"spans_{i:06d}.pkl", "rb") as fh:
                    res: _JobResult = pickle.load(fh)
                ner, pat = _scan_texts(rows, plan)
                if len(ner) != len(res.ner_spans) or len(pat) != len(res.pattern_spans):
                    raise RuntimeError("input changed between passes")
                cache: dict[tuple[bool, str], _TextResult] = {}

                def text_result(is_ner: bool, s: str) -> _TextResult:
                    k = (is_ner, s)
                    r = cache.get(k)
                    if r is None:
                        idx = (ner if is_ner else pat)[s]
                        spans = (res.ner_spans if is_ner else res.pattern_spans)[idx]
                        err = (res.ner_errors if is_ner else res.pattern_errors).get(idx)
                        if spans is None:
                            r = _TextResult(None, [], err or "detect_failed")
                        else:
                            try:
                                r = anon.text(s, spans)
                            except FraudSLMError:
                                raise
                            except Exception as exc:  # noqa: BLE001 - fail closed, no message
                                r = _TextResult(None, [], f"anonymize_failed:{type(exc).__name__}")
                        cache[k] = r
                    return r

                cols_out: dict[str, list] = {c: [] for c in out_names}
                ent_rows: dict[str, list] = {f.name: [] for f in ENTITY_SCHEMA}
                n = len(rows["record_id"])
                for r in range(n):
                    rid, source = rows["record_id"][r], rows["source"][r]
                    ledger.read(source)
                    try:
                        rec, ents, originals = _anonymize_record(rows, r, plan, text_result, replacer)
                        sig = _signals(originals)
                    except _Quarantine as q:
                        quarantine.append((rid, source, q.reason))
                        ledger.quarantine(source, q.reason.split(":", 1)[0])
                        continue
                    except FraudSLMError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - fail closed
                        reason = f"anonymize_failed:{type(exc).__name__}"
                        quarantine.append((rid, source, reason))
                        ledger.quarantine(source, "anonymize_failed")
                        continue
                    rec.update(sig)
                    rec["n_entities"] = sum(1 for e in ents if e[6] != COLUMN_RECOGNIZER)
                    # gate this record before it is staged
                    cells = []
                    for c in string_out:
                        v = rec.get(c)
                        if v is not None:
                            cells.append((c, v if isinstance(v, str) else str(v), c in scan_cols))
                    gate.scan_record(rid, cells)
                    if gt_checked:
                        for _, v, _ in cells:
                            for off, piece in segments(v):
                                for s, e, t in gt_matcher.find(piece):
                                    gt_surviving[t] += 1
                                    gt_distinct.add((t, piece[s:e].casefold()))  # in memory only, never written
                    for c in out_names:
                        cols_out[c].append(rec[c])
                    for fld, t, s, e, score, op, recog in ents:
                        ent_rows["record_id"].append(rid)
                        ent_rows["field"].append(fld)
                        ent_rows["type"].append(t)
                        ent_rows["start"].append(s)
                        ent_rows["end"].append(e)
                        ent_rows["score"].append(score)
                        ent_rows["operator"].append(op)
                        ent_rows["recognizer"].append(recog)
                        ent_by_type[t] += 1
                        ent_by_source[source][t] += 1
                        ent_by_field[fld] += 1
                        ent_by_operator[op] += 1
                    for col in SIGNAL_COLUMNS:
                        if rec[col] is not None:
                            signal_counts[col] += 1
                    ledger.accept(source)
                rec_writer.write_table(pa.Table.from_pydict(cols_out, schema=out_schema))
                ent_writer.write_table(pa.Table.from_pydict(ent_rows, schema=ENTITY_SCHEMA))
        finally:
            rec_writer.close()
            ent_writer.close()
        q_table = pa.Table.from_pydict(
            {
                "record_id": [q[0] for q in quarantine],
                "source": [q[1] for q in quarantine],
                "reason": [q[2] for q in quarantine],
            },
            schema=QUARANTINE_SCHEMA,
        )
        pq.write_table(q_table, stage_dir / "quarantine.parquet", compression="zstd")

        # ---------------------------------------------------------------------------- reports + publish
        gate_dict = gate.report.to_dict()
        gate_dict.update(
            {
                "original_values_checked": len(dictionary),
                "canaries_checked": gate.canaries_checked,
                "key_fingerprint": pseudonymizer.fingerprint,
                "fail_on_residual": cfg.gate.fail_on_residual,
            }
        )
        seconds = time.perf_counter() - t0
        totals = ledger.totals()
        metrics: dict[str, Any] = {
            "stage": "anonymize",
            "records_in": n_rows,
            "records_out": totals["accepted"],
            "quarantined": totals["quarantined"],
            "partitions": n_parts,
            "executor": executor.name if cfg.executor == "local" else "dask",
            "workers": cfg.workers,
            "seconds": round(seconds, 3),
            "detect_seconds": round(t_detect, 3),
            "records_per_s": round(n_rows / seconds, 2) if seconds > 0 else None,
            "distinct_texts": {"ner": metrics_counts["ner_texts"], "patterns_only": metrics_counts["pattern_texts"]},
            "entities": {
                "total": sum(ent_by_type.values()),
                "by_type": dict(sorted(ent_by_type.items())),
                "by_source": {s: dict(sorted(c.items())) for s, c in sorted(ent_by_source.items())},
                "by_field": dict(sorted(ent_by_field.items())),
                "by_operator": dict(sorted(ent_by_operator.items())),
            },
            "dictionary_values": len(dictionary),
            "dictionary_sweep_hits": anon.sweep_hits,
            "signals": {c: signal_counts.get(c, 0) for c in SIGNAL_COLUMNS},
            "columns": {a.name: a.action + ("+ner" if a.action == "scan" and a.ner else "") for a in plan},
            "gate": gate_dict,
            "key_fingerprint": pseudonymizer.fingerprint,
            "params_digest": params.digest(),
        }
        if ground_truth is not None:
            metrics["ground_truth"] = {
                "records_in_batch": gt_records,
                "values_checked": gt_checked,
                "values_too_short_to_check": gt_unchecked,
                "values_surviving": len(gt_distinct),
                "occurrences_surviving": sum(gt_surviving.values()),
                "surviving_by_type": dict(sorted(gt_surviving.items())),
                "canaries_checked": gate.canaries_checked,
            }
        ledger.extra["key_fingerprint"] = pseudonymizer.fingerprint

        gate_failed = not gate.report.passed and cfg.gate.fail_on_residual
        if gate_failed or not ledger.balanced:
            _publish(out, None, gate_dict, metrics, ledger)  # reports only: the data stays unpublished
            if gate_failed:
                res_txt = ", ".join(f"{k}={v}" for k, v in sorted(gate.report.residual.items()))
                raise GateError(
                    f"leakage gate failed: residual PII in the anonymized output ({res_txt}); "
                    f"nothing published, see {out / 'gate.json'}"
                )
            raise GateError(f"anonymize ledger does not balance for {', '.join(ledger.unbalanced())}")
        if not gate.report.passed:
            log.warning("leakage gate found residual PII but anonymize.gate.fail_on_residual is false")
        _publish(out, stage_dir, gate_dict, metrics, ledger)
    return metrics


DATA_FILES = ("records.parquet", "entities.parquet", "quarantine.parquet")


def _publish(out: Path, staged: Optional[Path], gate: dict, metrics: dict, ledger: Ledger) -> None:
    """Move the gated files into `out`, each atomically (the folder itself is left in place: DVC tracks the files
    and keeps its .gitignore there). Without `staged` (gate failed), data files of an earlier run are removed so
    nothing in `out` looks like the result of this run."""
    out.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        if staged is None:
            (out / name).unlink(missing_ok=True)
        else:
            with atomic_path(out / name, suffix=".parquet") as tmp:
                shutil.copyfile(staged / name, tmp)
    write_json(out / "gate.json", gate)
    ledger.write(out)
    write_json(out / "metrics.json", metrics)


class _Quarantine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _anonymize_record(rows, r, plan, text_result, replacer: Replacer):
    """(output row, entity rows, original structured PII values by type) for record r of a partition."""
    rec: dict[str, Any] = {}
    ents: list[tuple] = []
    originals: dict[str, list[str]] = defaultdict(list)
    token = replacer.pseudonymizer.token
    for a in plan:
        v = rows[a.name][r]
        if a.action == "scan":
            if v is None:
                rec[a.name] = None
                continue
            s = v if isinstance(v, str) else str(v)
            if not s:
                rec[a.name] = s
                continue
            tr = text_result(a.ner, s)
            if tr.error:
                raise _Quarantine(tr.error)
            rec[a.name] = tr.new_text
            for t, st, en, score, op, recog in tr.entities:
                ents.append((a.name, t, st, en, score, op, recog))
                originals[t].append(s[st:en])
            continue
        if a.action == "keep":
            rec[a.name] = v
            continue
        if v is not None and a.entity_type and a.holds_pii_values:
            sv = v if isinstance(v, str) else str(v)
            originals[a.entity_type].insert(0, sv)  # structured values win over text mentions
            if sv and a.name != "group_id":
                ents.append((a.name, a.entity_type, 0, len(sv), 1.0, a.action, COLUMN_RECOGNIZER))
        if a.action == "drop":
            continue
        rec[a.name] = apply_column(a, v, token)
    return rec, ents, originals


def _signals(originals: dict[str, list[str]]) -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for col, (typ, fn) in SIGNALS.items():
        val = None
        for v in originals.get(typ, ()):
            val = fn(v)
            if val is not None:
                break
        out[col] = val
    return out
