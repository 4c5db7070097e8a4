"""`fraudslm anonymize`: detect and replace PII in the record table, gate the result, publish atomically.

Flow (outputs are staged in a private temp folder and reach `out` only when the leakage gate passes):

1. **detect** (parallel): the input is read in partitions of `anonymize.partition_rows` records (fewer for a small
   input, so that it still makes MIN_PARTITIONS partitions for the workers to share); each partition's
   distinct scanned texts are sent to a worker (in-process, a local process pool of `workers` processes, or a Dask
   cluster), whose detector is built once per process. Workers return spans only (positions, types, scores).
   A text whose analysis throws is retried alone; if it still throws, its records are quarantined.
   Meanwhile the driver collects the batch dictionary of original PII values: every value the detector found plus
   the values of the PII columns (names, e-mails, cards ... from `anonymize.columns`) and the customer ids.
2. **replace + gate** (streaming): each partition is read again; detected spans are united with every
   occurrence of a dictionary value (a name found in one record is replaced in all of them), operators are
   applied in one pass per distinct text, column policies and signal columns are computed, and every output
   record goes through the leakage gate before its partition is appended to the staged Parquet files. With the
   local executor, `workers` > 1 and a fork start, partitions run on forked worker processes that inherit the
   dictionary and the keys from the driver's memory (nothing is pickled to them but the partition's rows); their
   tables and counts come back and are written and merged in partition order. Otherwise (Dask, spawn, one
   worker) the pass runs in the driver: the dictionary and the key never leave it.
3. **publish**: each staged file is moved into `out` atomically, then gate.json, ledger.json, metrics.json. A
   failing gate (or an unbalanced ledger) writes the reports only, removes data files of an earlier run from
   `out`, and exits 1.

No raw value is logged, written or put in an exception message; quarantine rows carry the reason only.
Outputs depend only on the input, params and key: they are byte-identical across executors and worker counts.
"""


from __future__ import annotations

import logging
import multiprocessing as mp
import pickle
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.anonymize.columns import ColumnAction, is_text_type, output_type, plan_columns
from pipeline.anonymize.evaluate import (
    GroundTruthCheck,
    load_ground_truth,
    measured_recall,
    record_id_for,
    reidentification,
    residual_risk,
)
from pipeline.anonymize.executors import DetectorFactory, Job, JobResult, get_detector, make_executor
from pipeline.anonymize.gate import GateReport, LeakageGate, ValueMatcher
from pipeline.anonymize.operators import get_operator
from pipeline.anonymize.pseudonym import (
    SIGNALS,
    Pseudonymizer,
    Replacer,
    load_encryptor,
    load_key,
    rules_from_params,
)
from pipeline.anonymize.replace import (
    COLUMN_RECOGNIZER,
    Anonymizer,
    Quarantine,
    SweepCandidates,
    TextResults,
    anonymize_record,
    collect_detected,
    collect_structured,
    scan_texts,
    signals,
)
from pipeline.errors import ConfigError, FraudSLMError, GateError
from pipeline.contracts import AnonymizeMetrics, write_metrics
from pipeline.io import atomic_path, write_json
from pipeline.ledger import Ledger

log = logging.getLogger(__name__)

__all__ = ["run_anonymize", "record_id_for", "ENTITY_SCHEMA", "QUARANTINE_SCHEMA", "DATA_FILES"]

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
DATA_FILES = ("records.parquet", "entities.parquet", "quarantine.parquet")


MIN_PARTITIONS = 8  # a small input is cut finer, so that every worker has work until the end (load balance)
MIN_PARTITION_ROWS = 250


def partition_size(n_rows: int, partition_rows: int) -> int:
    """Records per partition: `anonymize.partition_rows`, or fewer for an input of under MIN_PARTITIONS such
    partitions (at least MIN_PARTITION_ROWS). It depends on the row count only, never on the worker count, so the
    output stays byte-identical across executors and workers."""
    return max(1, min(partition_rows, max(MIN_PARTITION_ROWS, -(-n_rows // MIN_PARTITIONS))))


def _iter_batches(path: Path, rows: int, columns: Optional[list[str]] = None) -> Iterator[pa.RecordBatch]:
    """The input's partitions as record batches of `rows` records (the same row ranges whatever the columns)."""
    pf = pq.ParquetFile(path)
    yield from pf.iter_batches(batch_size=rows, columns=columns)


def _iter_partitions(path: Path, rows: int, columns: Optional[list[str]] = None) -> Iterator[dict[str, list]]:
    for batch in _iter_batches(path, rows, columns):
        yield batch.to_pydict()


def _detect_columns(plan: list[ColumnAction]) -> list[str]:
    """The columns the detection pass reads: record ids, scanned columns and columns holding PII values."""
    cols = ["record_id"]
    for a in plan:
        if (a.action == "scan" or a.holds_pii_values) and a.name not in cols:
            cols.append(a.name)
    return cols


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



# ========================================================================================= setup


@dataclass
class _Policy:
    """The operator policy with its keys (never logged: the key stays inside the Pseudonymizer)."""

    pseudonymizer: Pseudonymizer
    replacer: Replacer
    keep_types: set[str]

    @classmethod
    def from_params(cls, cfg) -> "_Policy":
        key = load_key()
        rules, default_rule = rules_from_params(cfg.operators, cfg.default_operator)
        ops = {r.operator: get_operator(r.operator) for r in [default_rule, *rules.values()]}
        needs_enc = any(op.needs_encryption_key for op in ops.values())
        encryptor = load_encryptor(required=needs_enc)
        pseudonymizer = Pseudonymizer(key)
        del key
        replacer = Replacer(rules, default_rule, pseudonymizer, encryptor if needs_enc else None)
        return cls(pseudonymizer, replacer, set(replacer.keeps))


def _open_input(inp: Path) -> tuple[Path, pa.Schema, int]:
    src = inp / "records.parquet" if inp.is_dir() else inp
    if not src.is_file():
        raise ConfigError(f"{src}: input record table not found (run `fraudslm ingest` first)")
    try:
        pfile = pq.ParquetFile(src)
    except Exception as exc:  # noqa: BLE001 - corrupt file
        raise ConfigError(f"{src}: not a readable Parquet file ({type(exc).__name__})") from None
    in_schema = pfile.schema_arrow
    missing = [c for c in REQUIRED if c not in in_schema.names]
    if missing:
        raise ConfigError(f"{src}: missing column(s) {', '.join(missing)}")
    return src, in_schema, pfile.metadata.num_rows


# ============================================================================== pass 1: detection


@dataclass
class _Detected:
    dictionary: ValueMatcher
    record_ids: set[str]
    ner_texts: int
    pattern_texts: int
    executor: str
    seconds: float
    sweep_withheld: int = 0  # free-text values the detector tagged too rarely where they occur to sweep


def _detect_pass(src: Path, work: Path, cfg, plan: list[ColumnAction], keep_types: set[str],
                 factory: Optional[DetectorFactory], n_parts: int, part_rows: int, t0: float) -> _Detected:
    """Detection over all partitions (parallel); spans are kept in `work`, known values in the batch dictionary."""
    dictionary = ValueMatcher()
    candidates = SweepCandidates()
    record_ids: set[str] = set()
    n_ner = n_pat = 0
    executor = make_executor(cfg, cfg.model_dump_json(), factory, n_parts)
    try:
        inflight: deque[tuple[Job, Any]] = deque()

        def drain_one() -> None:
            job, fut = inflight.popleft()
            if "pandas" not in sys.modules:
                # the driver idles while the workers detect: import now what later steps need (pyarrow converts
                # time-zone-aware timestamps through pandas; the k-anonymity check uses it), not on the critical path
                import pandas  # noqa: F401
            res = fut.result()
            collect_detected(dictionary, ((job.ner_texts, res.ner_spans), (job.pattern_texts, res.pattern_spans)),
                             keep_types, candidates)
            with open(work / f"spans_{job.index:06d}.pkl", "wb") as fh:
                pickle.dump(res, fh, protocol=pickle.HIGHEST_PROTOCOL)

        for i, rows in enumerate(_iter_partitions(src, part_rows, _detect_columns(plan))):
            record_ids.update(rows["record_id"])
            collect_structured(dictionary, plan, rows, keep_types)
            ner, pat = scan_texts(rows, plan)
            n_ner += len(ner)
            n_pat += len(pat)
            job = Job(i, list(ner), list(pat))
            while len(inflight) >= executor.slots:
                drain_one()
            inflight.append((job, executor.submit(job)))
        while inflight:
            drain_one()
    finally:
        executor.close()
    # free-text values join the dictionary only where the detector agrees with itself (replace.SweepCandidates)
    if candidates.values:
        for rows in _iter_partitions(src, part_rows, [a.name for a in plan if a.action == "scan"]):
            ner, _ = scan_texts(rows, plan)
            candidates.count(ner)
    candidates.commit(dictionary)
    return _Detected(dictionary, record_ids, n_ner, n_pat, executor.name, time.perf_counter() - t0,
                     candidates.withheld)


# ===================================================================== pass 2: replace + gate


@dataclass
class _Tally:
    by_type: Counter = field(default_factory=Counter)
    by_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    by_field: Counter = field(default_factory=Counter)
    by_operator: Counter = field(default_factory=Counter)
    in_text_by_type: Counter = field(default_factory=Counter)  # detector + dictionary hits in scanned text
    signals: Counter = field(default_factory=Counter)
    quarantine: list[tuple[str, str, str]] = field(default_factory=list)

    def merge(self, other: "_Tally") -> None:
        for mine, theirs in ((self.by_type, other.by_type), (self.by_field, other.by_field),
                             (self.by_operator, other.by_operator), (self.in_text_by_type, other.in_text_by_type),
                             (self.signals, other.signals)):
            mine.update(theirs)
        for src, c in other.by_source.items():
            self.by_source[src].update(c)
        self.quarantine.extend(other.quarantine)

    def entities(self) -> dict[str, Any]:
        return {
            "total": sum(self.by_type.values()),
            "by_type": dict(sorted(self.by_type.items())),
            "by_source": {s: dict(sorted(c.items())) for s, c in sorted(self.by_source.items())},
            "by_field": dict(sorted(self.by_field.items())),
            "by_operator": dict(sorted(self.by_operator.items())),
        }


@dataclass
class _PartResult:
    """What one partition of the replace pass gives back: output tables and counts (no raw values; the ground-truth
    check's surviving values travel as digests)."""

    records: pa.Table
    entities: pa.Table
    tally: _Tally
    ledger: Ledger
    gate: GateReport
    truth_surviving: Counter
    truth_distinct: set
    sweep_hits: int


_FORKED_PASS: Optional[tuple["_ReplacePass", Path]] = None  # set in the driver just before its workers fork


def _replace_job(index: int, batch: pa.RecordBatch) -> _PartResult:
    """Runs in a forked worker: one partition through the pass the driver set up (inherited, never pickled)."""
    if _FORKED_PASS is None:
        raise RuntimeError("replace worker started without its pass (not forked)")
    rp, work = _FORKED_PASS
    return rp.process(index, batch.to_pydict(), work)


def _fork_pool(workers: int):
    """A process pool for the replace pass, or None to run it here. Only forked workers are used: they inherit the
    batch dictionary and the pseudonym key from this process's memory, so neither is ever pickled or sent anywhere
    (a spawn start, Dask or a single worker keep the pass in the driver)."""
    from pipeline.anonymize.executors import _start_method

    if workers <= 1 or _start_method() != "fork":
        return None
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("fork"))


class _ReplacePass:
    """Streams the partitions again: replacement, column policies, signals, the gate per record, staged Parquet."""

    def __init__(self, plan: list[ColumnAction], out_schema: pa.Schema, anon: Anonymizer, replacer: Replacer,
                 gate: LeakageGate, truth: GroundTruthCheck, ledger: Ledger) -> None:
        self.plan, self.out_schema, self.anon, self.replacer = plan, out_schema, anon, replacer
        self.gate, self.truth, self.ledger = gate, truth, ledger
        self.tally = _Tally()
        self.scan_cols = [a.name for a in plan if a.action == "scan"]
        string_out = [f.name for f in out_schema if is_text_type(f.type) or pa.types.is_integer(f.type)]
        self.string_out = [c for c in string_out if c not in ("record_id", "dup_cluster", "n_entities", "label")]

    def run(self, src: Path, work: Path, partition_rows: int, stage_dir: Path, workers: int = 1) -> str:
        """Every partition through `process` (on `workers` forked processes when that is safe, else here), the
        results written and merged in partition order: the output does not depend on where a partition ran."""
        global _FORKED_PASS
        rec_writer = pq.ParquetWriter(stage_dir / "records.parquet", self.out_schema, compression="zstd")
        ent_writer = pq.ParquetWriter(stage_dir / "entities.parquet", ENTITY_SCHEMA, compression="zstd")

        def write(part: _PartResult) -> None:
            rec_writer.write_table(part.records)
            ent_writer.write_table(part.entities)
            self.merge(part)

        pool = _fork_pool(workers)
        where = "driver" if pool is None else "local-pool"
        try:
            if pool is None:
                for i, rows in enumerate(_iter_partitions(src, partition_rows)):
                    write(self.process(i, rows, work))
            else:
                _FORKED_PASS = (self, work)  # the forked workers inherit this pass (dictionary, keys) from here
                inflight: deque = deque()
                for i, batch in enumerate(_iter_batches(src, partition_rows)):
                    while len(inflight) >= 2 * workers:
                        write(inflight.popleft().result())
                    inflight.append(pool.submit(_replace_job, i, batch))  # Arrow buffers; rows built there
                while inflight:
                    write(inflight.popleft().result())
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
                _FORKED_PASS = None
            rec_writer.close()
            ent_writer.close()
        q = self.tally.quarantine
        q_table = pa.Table.from_pydict(
            {"record_id": [x[0] for x in q], "source": [x[1] for x in q], "reason": [x[2] for x in q]},
            schema=QUARANTINE_SCHEMA,
        )
        pq.write_table(q_table, stage_dir / "quarantine.parquet", compression="zstd")
        return where

    def process(self, index: int, rows: dict[str, list], work: Path) -> "_PartResult":
        """One partition with fresh accumulators: its output tables and its counts, for `merge`."""
        with open(work / f"spans_{index:06d}.pkl", "rb") as fh:
            res: JobResult = pickle.load(fh)
        ner, pat = scan_texts(rows, self.plan)
        if len(ner) != len(res.ner_spans) or len(pat) != len(res.pattern_spans):
            raise RuntimeError("input changed between passes")
        truth, anon = self.truth, self.anon
        kept = self.tally, self.ledger, self.gate.report, truth.surviving, truth.distinct, anon.sweep_hits
        self.tally, self.ledger, self.gate.report = _Tally(), Ledger(self.ledger.stage), self.gate.report.empty()
        truth.surviving, truth.distinct, anon.sweep_hits = Counter(), set(), 0
        try:
            recs, ents = self.partition(rows, TextResults(anon, ner, pat, res))
            return _PartResult(pa.Table.from_pydict(recs, schema=self.out_schema),
                               pa.Table.from_pydict(ents, schema=ENTITY_SCHEMA), self.tally, self.ledger,
                               self.gate.report, truth.surviving, truth.distinct, anon.sweep_hits)
        finally:
            self.tally, self.ledger, self.gate.report, truth.surviving, truth.distinct, anon.sweep_hits = kept

    def merge(self, part: "_PartResult") -> None:
        """Add one partition's counts (in partition order: quarantine rows and gate examples keep their order)."""
        self.tally.merge(part.tally)
        self.ledger.merge(part.ledger)
        self.gate.report.merge(part.gate)
        self.truth.surviving.update(part.truth_surviving)
        self.truth.distinct |= part.truth_distinct
        self.anon.sweep_hits += part.sweep_hits

    def partition(self, rows: dict[str, list], text_result: TextResults) -> tuple[dict[str, list], dict[str, list]]:
        tally, ledger = self.tally, self.ledger
        out_names = self.out_schema.names
        cols_out: dict[str, list] = {c: [] for c in out_names}
        ent_rows: dict[str, list] = {f.name: [] for f in ENTITY_SCHEMA}
        for r in range(len(rows["record_id"])):
            rid, source = rows["record_id"][r], rows["source"][r]
            ledger.read(source)
            try:
                rec, ents, originals = anonymize_record(rows, r, self.plan, text_result, self.replacer)
                sig = signals(originals)
            except Quarantine as q:
                tally.quarantine.append((rid, source, q.reason))
                ledger.quarantine(source, q.reason.split(":", 1)[0])
                continue
            except FraudSLMError:
                raise
            except Exception as exc:  # noqa: BLE001 - fail closed
                reason = f"anonymize_failed:{type(exc).__name__}"
                tally.quarantine.append((rid, source, reason))
                ledger.quarantine(source, "anonymize_failed")
                continue
            rec.update(sig)
            rec["n_entities"] = sum(1 for e in ents if e[6] != COLUMN_RECOGNIZER)
            # gate this record before it is staged
            cells = []
            for c in self.string_out:
                v = rec.get(c)
                if v is not None:
                    cells.append((c, v if isinstance(v, str) else str(v), c in self.scan_cols))
            self.gate.scan_record(rid, cells)
            self.truth.scan(cells)
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
                tally.by_type[t] += 1
                tally.by_source[source][t] += 1
                tally.by_field[fld] += 1
                tally.by_operator[op] += 1
                if recog != COLUMN_RECOGNIZER:
                    tally.in_text_by_type[t] += 1
            for col in SIGNAL_COLUMNS:
                if rec[col] is not None:
                    tally.signals[col] += 1
            ledger.accept(source)
        return cols_out, ent_rows


# ============================================================================ re-identification


def _factory_name(factory: Optional[DetectorFactory]) -> str:
    if factory is None:
        return "default"
    return f"{getattr(factory, '__module__', '')}.{getattr(factory, '__qualname__', type(factory).__name__)}"


def _marked_in_sources(sources: Optional[Path]) -> list[str]:
    """Record columns a source config marks `quasi_identifier: true` (fields: {src: {column, quasi_identifier}})."""
    if sources is None or not Path(sources).is_file():
        return []
    import yaml

    try:
        doc = yaml.safe_load(Path(sources).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return []  # ingest validates this file; a broken one never reaches here
    out: list[str] = []
    for src in doc.get("sources") or [] if isinstance(doc, dict) else []:
        for spec in ((src or {}).get("fields") or {}).values() if isinstance(src, dict) else []:
            if isinstance(spec, dict) and spec.get("quasi_identifier") is True and isinstance(spec.get("column"), str):
                if spec["column"] not in out:
                    out.append(spec["column"])
    return out


def _quasi_columns(in_schema: pa.Schema, cfg, sources: Optional[Path] = None) -> list[str]:
    cols = list(cfg.quasi_identifiers)
    cols += [c for c in _marked_in_sources(sources) if c not in cols]
    for f in in_schema:
        meta = f.metadata or {}
        if meta.get(b"quasi_identifier", b"").lower() in (b"true", b"1", b"yes") and f.name not in cols:
            cols.append(f.name)
    return cols


def _reidentification(records: Path, in_schema: pa.Schema, cfg, sources: Optional[Path] = None) -> dict[str, Any]:
    """k-anonymity of the staged output over its quasi-identifiers; applies the offered policy when configured."""
    names = pq.ParquetFile(records).schema_arrow.names
    quasi = [c for c in _quasi_columns(in_schema, cfg, sources) if c in names]
    read = quasi + (["group_id"] if "group_id" in names else [])
    frame = pq.read_table(records, columns=read).to_pandas() if read else None
    if frame is None:
        import pandas as pd

        frame = pd.DataFrame(index=range(pq.ParquetFile(records).metadata.num_rows))
    res, after = reidentification(frame, quasi, cfg.k_target, "group_id", cfg.k_max_suppressed_share)
    res["policy"]["applied"] = False
    if cfg.k_apply_policy and res["policy"]["steps"] or (cfg.k_apply_policy and res["policy"]["suppress_records"]):
        table = pq.read_table(records)
        for c in quasi:
            i = table.schema.get_field_index(c)
            f = table.schema.field(i)
            vals = [None if (v is None or v != v) else v for v in after[c].tolist()]
            if not (is_text_type(f.type)):
                vals = [None if a is None or b is None else b for a, b in zip(vals, table.column(i).to_pylist())]
            table = table.set_column(i, f.with_nullable(True), pa.array(vals, type=f.type))
        with atomic_path(records, suffix=".parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd")
        res["policy"]["applied"] = True
        after_k, _ = reidentification(after, quasi, cfg.k_target, "group_id", 1.0)
        res["after_policy"] = {"min_k": after_k["min_k"], "share_below_k": after_k["share_below_k"]}
    return res


# ========================================================================================= stage


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
    policy = _Policy.from_params(cfg)
    src, in_schema, n_rows = _open_input(inp)
    plan = plan_columns(in_schema, cfg)
    out_schema = _output_schema(in_schema, plan).remove_metadata()
    canaries, gt_spans = load_ground_truth(ground_truth)
    part_rows = partition_size(n_rows, cfg.partition_rows)
    n_parts = max(1, -(-n_rows // part_rows))
    ledger = Ledger("anonymize")

    with tempfile.TemporaryDirectory(prefix="fraudslm-anon-") as work_s:
        work = Path(work_s)
        det = _detect_pass(src, work, cfg, plan, policy.keep_types, detector_factory, n_parts, part_rows, t0)

        truth = GroundTruthCheck(gt_spans, det.record_ids)
        gate = LeakageGate(cfg.gate.min_score, originals=det.dictionary, canaries=canaries,
                           allowed_types=policy.keep_types)
        anon = Anonymizer(policy.replacer, det.dictionary, plan)
        stage_dir = work / "stage"
        stage_dir.mkdir()
        rp = _ReplacePass(plan, out_schema, anon, policy.replacer, gate, truth, ledger)
        local_pool = cfg.executor == "local" and n_parts > 1
        replace_executor = rp.run(src, work, part_rows, stage_dir, min(cfg.workers, n_parts) if local_pool else 1)

        # ---------------------------------------------------------------------------- reports + publish
        fingerprint = policy.pseudonymizer.fingerprint
        gate_dict = gate.report.to_dict()
        gate_dict.update(
            {
                "original_values_checked": len(det.dictionary),
                "canaries_checked": gate.canaries_checked,
                "key_fingerprint": fingerprint,
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
            "executor": det.executor if cfg.executor == "local" else "dask",
            "replace_executor": replace_executor,
            "workers": cfg.workers,
            "seconds": round(seconds, 3),
            "detect_seconds": round(det.seconds, 3),
            "records_per_s": round(n_rows / seconds, 2) if seconds > 0 else None,
            "distinct_texts": {"ner": det.ner_texts, "patterns_only": det.pattern_texts},
            "entities": rp.tally.entities(),
            "dictionary_values": len(det.dictionary),
            "dictionary_sweep_hits": anon.sweep_hits,
            "dictionary_sweep_withheld": det.sweep_withheld,
            "signals": {c: rp.tally.signals.get(c, 0) for c in SIGNAL_COLUMNS},
            "columns": {a.name: a.action + ("+ner" if a.action == "scan" and a.ner else "") for a in plan},
            "gate": gate_dict,
            "key_fingerprint": fingerprint,
            "params_digest": params.digest(),
        }
        if ground_truth is not None:
            metrics["ground_truth"] = truth.metrics(gate.canaries_checked)
        if cfg.eval_set:
            factory_name = _factory_name(detector_factory)
            measured = measured_recall(cfg, lambda: get_detector(cfg.model_dump_json(), detector_factory),
                                       factory_name, policy.keep_types)
            metrics["residual_risk"] = residual_risk(cfg, measured, rp.tally.in_text_by_type, n_rows,
                                                     truth if ground_truth is not None else None)
        sources = Path(params.paths.sources) if getattr(params, "paths", None) is not None else None
        metrics["reidentification"] = _reidentification(stage_dir / "records.parquet", in_schema, cfg, sources)
        ledger.extra["key_fingerprint"] = fingerprint

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
    write_metrics(out, AnonymizeMetrics.model_validate(metrics))
