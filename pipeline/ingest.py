"""`fraudslm ingest`: fragmented sources -> one validated record table, nothing lost.

    run_ingest(sources=Path("schemas/sources.yaml"), out=Path("data/02_ingested"), params=params)

Each source in the config is read by the reader of its `kind` (pipeline/sources), in chunks of
`ingest.chunk_rows`; rows become typed records (schemas/record.py) or quarantine rows with a reason;
duplicates (exact, near) leave the table for duplicates.parquet. Writes, atomically, into `out`:
records.parquet, duplicates.parquet, quarantine.parquet, ledger.json, metrics.json.

Accounting gate: per source, rows read must equal the rows found in the three output files; otherwise the
ledger is written unbalanced and the stage raises GateError (exit 1). Ground truth (demo) is read only to
score the run (metrics.json `evaluation`), never to decide anything.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from itertools import islice
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.config import Params, ground_truth_dir
from pipeline.errors import GateError
from pipeline.contracts import IngestMetrics, write_metrics
from pipeline.io import atomic_path, read_parquet, sha256_tree
from pipeline.ledger import Ledger
from pipeline.sources.base import RawRow
from pipeline.sources.convert import DEDUP_KEY, KeySet, convert_chunk
from pipeline.sources.dedup import Deduper
from pipeline.sources.schema import record_schema
from pipeline.sources.spec import DedupFields, Resolved, ResolvedSource, load_sources

DUPLICATES_SCHEMA = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("source_key", pa.string(), nullable=False),
        pa.field("dup_of", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("similarity", pa.float64(), nullable=False),
        pa.field("label", pa.int8()),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string(), nullable=False),
        pa.field("locator", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("detail", pa.string()),
        pa.field("raw", pa.string()),
    ]
)
OUTPUTS = ("records.parquet", "duplicates.parquet", "quarantine.parquet")


def run_ingest(
    sources: Path,
    out: Path,
    params: Params,
    *,
    ground_truth: Optional[Path] = None,
    repo_root: Optional[Path] = None,
) -> dict[str, Any]:
    """Ingest every source of `sources` (a sources.yaml) into `out`; return the metrics.

    `ground_truth`: demo truth folder to score against (default: `paths.ground_truth` when set and present;
    null, the default, means no evaluation: a user's own sources are never scored against the demo truth).
    `repo_root`: base of relative locations (default: the working directory, the repository for `dvc repro`). Locations may use `${raw}` etc.
    (the `paths:` of params), so `params.paths.raw` points one config at another folder.
    """
    root = Path(repo_root) if repo_root else Path.cwd()
    resolved = load_sources(sources, params, root)
    schema_mod = record_schema()
    rec_schema = schema_mod.arrow_schema(resolved.extras)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ip = params.ingest

    ledger = Ledger("ingest")
    dedup = Deduper(ip.near_dup_threshold, ip.minhash_perm, ip.shingle_size)
    stats: dict[str, dict[str, Any]] = {}

    with contextlib.ExitStack() as stack:
        staging = stack.enter_context(_scratch(out, ".records.staging.parquet"))
        paths = {name: stack.enter_context(atomic_path(out / name, suffix=".parquet")) for name in OUTPUTS}
        with (
            pq.ParquetWriter(staging, rec_schema, compression="zstd") as rec_w,
            pq.ParquetWriter(paths["duplicates.parquet"], DUPLICATES_SCHEMA, compression="zstd") as dup_w,
            pq.ParquetWriter(paths["quarantine.parquet"], QUARANTINE_SCHEMA, compression="zstd") as q_w,
        ):
            for rs in resolved.sources:
                stats[rs.name] = _ingest_source(rs, resolved, ledger, dedup, rec_schema, rec_w, dup_w, q_w, params)
        _finalize_records(staging, paths["records.parquet"], rec_schema, dedup.conflicts)
        found = _count_outputs(paths)
        _reconcile(ledger, found)
        # outputs are renamed into place when the stack closes (atomic, all three together)

    metrics = _metrics(ledger, stats, dedup, resolved, params)
    truth = Path(ground_truth) if ground_truth else ground_truth_dir(params, root)
    if truth is not None and truth.is_dir():
        from pipeline.sources.evaluate import evaluate

        metrics["evaluation"] = evaluate(out, truth, [s.name for s in resolved.sources], label=_portable(truth, root))
    else:
        metrics["evaluation"] = None
    ledger.extra["params_digest"] = params.digest()
    ledger.write(out)
    write_metrics(out, IngestMetrics.model_validate(metrics))
    if not ledger.balanced:
        bad = ledger.unbalanced()
        raise GateError(f"ingest ledger does not balance for source(s) {bad}: read != accepted + quarantined + duplicates")
    _check_sources(resolved, ledger, params)
    return metrics


EMPTY_REASONS = frozenset({"empty_file", "no_rows"})


def _check_sources(resolved: Resolved, ledger: Ledger, params: Params) -> None:
    """Input gates that stop the run (exit 1) instead of carrying on without a source: a source that held no
    rows (unless `optional: true`), and one whose rows mostly failed to decode (a wrong `options.encoding`).
    Outputs and ledger are written first, so the quarantine shows what was found."""
    empty, undecodable = [], []
    for rs in resolved.sources:
        sc = ledger.source(rs.name)
        reasons = {k: v for k, v in sc.reasons.items() if v}
        if not sc.accepted and not sc.duplicates and set(reasons) <= EMPTY_REASONS and not rs.spec.optional:
            empty.append(rs)
        n_bad = reasons.get("bad_encoding", 0)
        if sc.read and n_bad / sc.read > params.ingest.max_bad_row_share:
            undecodable.append((rs, n_bad, sc.read))
    if empty:
        names = ", ".join(
            f"{rs.name!r} ({_portable(rs.ctx.location, rs.ctx.repo_root) if rs.ctx.location else 'no location'})"
            for rs in empty)
        raise GateError(f"empty source(s) {names}: no rows (empty file or header only); "
                        "fix the source or mark it `optional: true` in the source config")
    if undecodable:
        rs, n_bad, n = undecodable[0]
        enc = getattr(rs.options, "encoding", None)
        guess = _guess_encoding(rs.ctx.location) if rs.ctx.location else None
        hint = (f"it looks like {guess}: set `options.encoding: {guess}` for this source" if guess and guess != enc
                else "set its `options.encoding` in the source config (e.g. cp1252, latin-1)")
        raise GateError(f"source {rs.name!r}: {n_bad} of {n} rows do not decode as {enc or 'the declared encoding'} "
                        f"(more than ingest.max_bad_row_share={params.ingest.max_bad_row_share:g}); {hint}")


def _guess_encoding(location: Path, limit: int = 1 << 20) -> Optional[str]:
    """Best guess of a text file's encoding from its first MB, for the hint only: cp1252 (the usual culprit:
    Windows exports) when the bytes decode under it, else charset-normalizer's best ASCII-compatible match."""
    try:
        from pipeline.sources.textio import check_text_encoding, open_binary

        if not location.is_file():
            return None
        with open_binary(location, "auto") as fh:
            sample = fh.read(limit)
        try:
            sample.decode("cp1252")
            return "cp1252"
        except UnicodeDecodeError:
            pass
        from charset_normalizer import from_bytes

        for match in from_bytes(sample):
            try:
                return check_text_encoding(match.encoding, "guess")
            except Exception:  # noqa: BLE001 - not usable by the line readers (utf-16 ...)
                continue
    except Exception:  # noqa: BLE001 - a hint, never a failure of its own
        return None
    return None


def _portable(path: Path, root: Path) -> str:
    """A path as recorded in metrics (tracked in git): relative to the repository root when inside it, so the
    same run in another clone writes the same bytes; otherwise the folder name only (no machine paths)."""
    try:
        p, r = Path(path).resolve(), Path(root).resolve()
    except (OSError, RuntimeError):
        return Path(path).name
    return p.relative_to(r).as_posix() if r in p.parents else p.name


def _ingest_source(
    rs: ResolvedSource,
    resolved: Resolved,
    ledger: Ledger,
    dedup: Deduper,
    rec_schema: pa.Schema,
    rec_w: pq.ParquetWriter,
    dup_w: pq.ParquetWriter,
    q_w: pq.ParquetWriter,
    params: Params,
) -> dict[str, Any]:
    ip = params.ingest
    name = rs.name
    sc = ledger.source(name)
    if rs.ctx.location is not None:
        sc.sha256 = sha256_tree(rs.ctx.location)
        sc.bytes = _size(rs.ctx.location)
    keys = KeySet()
    labels: Counter = Counter()
    kinds: Counter = Counter()
    reader = rs.reader()
    for chunk in _chunks(reader.rows(), ip.chunk_rows):
        ledger.read(name, len(chunk))
        df, quarantine = convert_chunk(rs, chunk, resolved.extras, keys, ip.quarantine_raw_bytes)
        if quarantine:  # counted from the written file in _reconcile
            q_w.write_table(pa.Table.from_pylist(quarantine, schema=QUARANTINE_SCHEMA))
        if len(df) and rs.spec.dedup:
            rids = df["record_id"].tolist()
            texts = df["text"].tolist()
            labs = [None if pd.isna(v) else int(v) for v in df["label"]]
            if isinstance(rs.spec.dedup, DedupFields):
                matches = dedup.process_keyed(name, rids, texts, labs, df[DEDUP_KEY].tolist())
            else:
                matches = dedup.process(rids, texts, labs)
            is_dup = np.array([m is not None for m in matches], dtype=bool)
            if is_dup.any():
                d = df.loc[is_dup, ["record_id", "source", "source_key", "label"]].copy()
                ms = [m for m in matches if m is not None]
                d["dup_of"] = [m.dup_of for m in ms]
                d["kind"] = [m.kind for m in ms]
                d["similarity"] = [m.similarity for m in ms]
                kinds.update(m.kind for m in ms)
                dup_w.write_table(
                    pa.Table.from_pandas(d[DUPLICATES_SCHEMA.names], schema=DUPLICATES_SCHEMA, preserve_index=False)
                )
                df = df.loc[~is_dup]
        if len(df):
            counts = df["label"].value_counts(dropna=False)
            labels.update({("null" if pd.isna(k) else str(int(k))): int(v) for k, v in counts.items()})
            rec_w.write_table(pa.Table.from_pandas(df[rec_schema.names], schema=rec_schema, preserve_index=False))
    return {"labels": labels, "duplicate_kinds": kinds, "notes": list(getattr(reader, "notes", []))}


def _chunks(rows: Iterator[RawRow], size: int) -> Iterator[list[RawRow]]:
    while chunk := list(islice(rows, size)):
        yield chunk


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


@contextlib.contextmanager
def _scratch(folder: Path, name: str) -> Iterator[Path]:
    fd, tmp = tempfile.mkstemp(prefix=name, suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield Path(tmp)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _finalize_records(staging: Path, final: Path, schema: pa.Schema, conflicts: set[str]) -> None:
    """Second pass over the staged records: set `label_conflict` on cluster survivors (known only at the end)."""
    pf = pq.ParquetFile(staging)
    conflict_ids = pa.array(sorted(conflicts), type=pa.string())
    col = schema.get_field_index("label_conflict")
    with pq.ParquetWriter(final, schema, compression="zstd") as w:
        for i in range(pf.num_row_groups):
            t = pf.read_row_group(i)
            if len(conflict_ids):
                flag = pc.is_in(t["record_id"], value_set=conflict_ids)
                t = t.set_column(col, schema.field(col), flag)
            w.write_table(t)


def _count_outputs(paths: dict[str, Path]) -> dict[str, Any]:
    """Rows per source in each output file, and quarantine reasons / duplicate kinds per source."""
    found: dict[str, Any] = {}
    for name, path in paths.items():
        cols = {"records.parquet": ["source"], "duplicates.parquet": ["source", "kind"],
                "quarantine.parquet": ["source", "reason"]}[name]
        t = pq.read_table(path, columns=cols).to_pandas()
        found[name] = t
    return found


def _reconcile(ledger: Ledger, found: dict[str, pd.DataFrame]) -> None:
    """accepted / quarantined / duplicates (and reasons) from what the files hold; `read` came from the readers."""
    for name, sc in ledger.sources.items():
        rec = found["records.parquet"]
        dup = found["duplicates.parquet"]
        qua = found["quarantine.parquet"]
        sc.accepted = int((rec["source"] == name).sum())
        d = dup[dup["source"] == name]
        q = qua[qua["source"] == name]
        sc.duplicates = len(d)
        sc.quarantined = len(q)
        sc.reasons = Counter()
        sc.reasons.update(q["reason"].tolist())
        sc.reasons.update(f"duplicate_{k}" for k in d["kind"].tolist())


def _metrics(
    ledger: Ledger, stats: dict[str, dict[str, Any]], dedup: Deduper, resolved: Resolved, params: Params
) -> dict[str, Any]:
    per: dict[str, Any] = {}
    for rs in resolved.sources:
        sc = ledger.source(rs.name)
        st = stats.get(rs.name, {})
        labels = st.get("labels", Counter())
        n_lab = labels.get("0", 0) + labels.get("1", 0)
        read = sc.read or 0
        per[rs.name] = {
            "kind": rs.spec.kind,
            "read": sc.read,
            "accepted": sc.accepted,
            "quarantined": sc.quarantined,
            "duplicates": sc.duplicates,
            "quarantine_rate": round(sc.quarantined / read, 6) if read else 0.0,
            "duplicate_rate": round(sc.duplicates / read, 6) if read else 0.0,
            "duplicates_by_kind": dict(sorted(st.get("duplicate_kinds", Counter()).items())),
            "quarantine_reasons": {k: v for k, v in sorted(sc.reasons.items()) if not k.startswith("duplicate_")},
            "labels": {k: labels.get(k, 0) for k in ("0", "1", "null")},
            "prevalence": round(labels.get("1", 0) / n_lab, 6) if n_lab else None,
            "dedup": "fields" if isinstance(rs.spec.dedup, DedupFields) else ("text" if rs.spec.dedup else "off"),
            "notes": st.get("notes", []),
        }
    totals = ledger.totals()
    totals.pop("dropped", None)
    return {
        "stage": "ingest",
        "balanced": ledger.balanced,
        "totals": totals,
        "sources": per,
        "duplicates": {"exact": dedup.n_exact, "near": dedup.n_near, "label_conflicts": len(dedup.conflicts)},
        "params": params.ingest.model_dump(),
        "params_digest": params.digest(),
    }


def load_records(folder: Path) -> pd.DataFrame:
    """The record table written by this stage (for later stages and tests)."""
    return read_parquet(Path(folder) / "records.parquet")
