"""Raw rows of one source -> typed record chunk + quarantine rows (vectorised where it pays).

Checks, first failing one wins: key present, text non-empty, label in the mapping, timestamp parses, extra
columns convert to their schema type, key unique in the source. Details name the field and the problem, never
the value (quarantine keeps the raw row; details also travel to logs).
"""

from __future__ import annotations

import json
import re
import string
import zoneinfo
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Optional

import numpy as np
import pandas as pd

from pipeline.sources.base import RawRow
from pipeline.ids import record_id  # noqa: F401 - the one formula; re-exported for callers of this module
from pipeline.sources.spec import DedupFields, ResolvedSource, norm_label

DEDUP_KEY = "_dedup_key"

_TRAIL = re.compile(r"[\s:;,|/-]+$")
_LEAD = re.compile(r"^[\s:;,|/-]+")
_OFFSET = re.compile(r"(?:[zZ]|[+-]\d{2}:?\d{2})\s*$")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}


def to_str(v: Any) -> Optional[str]:
    """A field value as text (None/NaN/'' -> None)."""
    if v is None:
        return None
    if isinstance(v, str):
        s = v
    elif isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, float):
        if v != v:
            return None
        s = repr(v) if not v.is_integer() else str(int(v)) if abs(v) < 1e15 else repr(v)
    elif isinstance(v, (int, np.integer)):
        s = str(int(v))
    elif isinstance(v, (datetime, date)):
        s = v.isoformat()
    elif isinstance(v, bytes):
        s = v.decode("utf-8", errors="replace")
    elif isinstance(v, (dict, list, tuple)):
        s = json.dumps(v, ensure_ascii=False, sort_keys=True, default=str)
    else:
        s = str(v)
    s = s.strip()
    return s or None


class KeySet:
    """Keys seen in one source, as sorted 64-bit hashes (8 bytes a key, so memory stays small at scale)."""

    def __init__(self) -> None:
        self._seen = np.empty(0, dtype=np.uint64)

    def check_and_add(self, keys: list[str]) -> np.ndarray:
        """Boolean mask: True where the key was already seen (earlier chunk or earlier in this list)."""
        if not keys:
            return np.zeros(0, dtype=bool)
        h = pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False)
        dup = np.zeros(len(keys), dtype=bool)
        if len(self._seen):
            pos = np.searchsorted(self._seen, h)
            pos[pos == len(self._seen)] = 0
            dup |= self._seen[pos] == h
        # within the chunk: the first occurrence wins (stable sort keeps the earliest of equal hashes first)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        repeat = np.zeros(len(keys), dtype=bool)
        repeat[1:] = hs[1:] == hs[:-1]
        dup[order[repeat]] = True
        self._seen = np.sort(np.concatenate([self._seen, h[~dup]]))
        return dup


def _truncate(s: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary; lone surrogates become '?'."""
    b = s.encode("utf-8", errors="replace")
    return b[:limit].decode("utf-8", errors="ignore")


def raw_of(row: RawRow, limit: int) -> Optional[str]:
    if row.raw is not None:
        return _truncate(row.raw, limit)
    if row.fields is not None:
        return _truncate(json.dumps(row.fields, ensure_ascii=False, sort_keys=True, default=str), limit)
    return None


def parse_timestamps(values: list[Any], fmt: str, tz: str) -> pd.Series:
    """Parse to datetime64[us, UTC]; unparseable -> NaT (the caller tells empty from invalid)."""
    s = pd.Series(values, dtype=object)
    n = len(s)
    if n == 0:
        return pd.Series([], dtype="datetime64[us, UTC]")
    out = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us, UTC]")
    present = s.notna()
    if not present.any():
        return out
    vals = s[present]
    is_dt = vals.map(lambda v: isinstance(v, (datetime, pd.Timestamp)))
    parsed = pd.Series(pd.NaT, index=vals.index, dtype="datetime64[us, UTC]")
    if is_dt.any():
        dts = vals[is_dt].map(lambda v: _localize(pd.Timestamp(v), tz))
        parsed[is_dt] = pd.to_datetime(dts, utc=True).astype("datetime64[us, UTC]")
    rest = vals[~is_dt].map(to_str)
    rest = rest[rest.notna()]
    if len(rest):
        if fmt == "rfc2822":
            conv = rest.map(_rfc2822)
            parsed[conv.index] = pd.to_datetime(conv.map(lambda d: _localize(d, tz) if d is not None else None), utc=True).astype("datetime64[us, UTC]")
        elif fmt in ("epoch_s", "epoch_ms"):
            num = pd.to_numeric(rest, errors="coerce")
            parsed[num.index] = pd.to_datetime(num, unit="s" if fmt == "epoch_s" else "ms", utc=True, errors="coerce").astype("datetime64[us, UTC]")
        else:
            kwargs = {"format": fmt}
            if tz == "UTC":
                p = pd.to_datetime(rest, utc=True, errors="coerce", **kwargs)
                parsed[p.index] = p.astype("datetime64[us, UTC]")
            else:
                aware = rest.str.contains(_OFFSET)
                if aware.any():
                    p = pd.to_datetime(rest[aware], utc=True, errors="coerce", **kwargs)
                    parsed[p.index] = p.astype("datetime64[us, UTC]")
                if (~aware).any():
                    p = pd.to_datetime(rest[~aware], errors="coerce", **kwargs)
                    p = p.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT").dt.tz_convert("UTC")
                    parsed[p.index] = p.astype("datetime64[us, UTC]")
    out[parsed.index] = parsed
    return out


def _localize(ts: Any, tz: str) -> Any:
    if ts is None or ts is pd.NaT:
        return None
    ts = pd.Timestamp(ts)
    return ts.tz_localize(zoneinfo.ZoneInfo(tz)) if ts.tzinfo is None else ts


def _rfc2822(v: str) -> Optional[datetime]:
    try:
        return parsedate_to_datetime(v)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def text_col(vals: list[Any]) -> pd.Series:
    """Values as stripped text (pandas "string"), NA for None / NaN / empty. Vectorised when all are str."""
    if all(v is None or type(v) is str for v in vals):
        col = pd.Series(vals, dtype="string").str.strip()
        return col.mask(col.str.len() == 0)
    return pd.Series([to_str(v) for v in vals], dtype="string")


def label_col(vals: list[Any], case_sensitive: bool) -> pd.Series:
    """`norm_label` over a column, vectorised for text values."""
    if all(v is None or type(v) is str for v in vals):
        col = text_col(vals)
        low = col.str.lower()
        col = low.where(low.isin(["true", "false"]), col) if case_sensitive else col.str.casefold()
        return col.str.replace(r"^(-?\d+)\.0$", r"\1", regex=True)
    return pd.Series([norm_label(v, case_sensitive) for v in vals], dtype="string")


def convert_chunk(
    rs: ResolvedSource, rows: list[RawRow], extras: dict[str, str], keys: KeySet, raw_limit: int
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Typed records (core + all extra columns, contract order) and quarantine rows for one chunk."""
    spec = rs.spec
    quarantine: list[dict[str, Any]] = []
    good = [r for r in rows if r.reason is None]
    for r in rows:
        if r.reason is not None:
            quarantine.append(_q(spec.name, r, r.reason, r.detail, raw_limit))
    n = len(good)
    reason: list[Optional[str]] = [None] * n
    detail: list[str] = [""] * n

    def fail(mask: Any, why: str, what: str) -> None:
        for i in np.flatnonzero(np.asarray(mask, dtype=bool)):
            if reason[i] is None:
                reason[i], detail[i] = why, what

    raw_cols: dict[str, list[Any]] = {}
    text_cols: dict[str, pd.Series] = {}

    def raw(field: str) -> list[Any]:
        if field not in raw_cols:
            raw_cols[field] = [r.fields.get(field) for r in good]  # type: ignore[union-attr]
        return raw_cols[field]

    def txt(field: str) -> pd.Series:
        if field not in text_cols:
            text_cols[field] = text_col(raw(field))
        return text_cols[field]

    # key
    if spec.key:
        key_col = txt(spec.key)
    else:
        key_col = pd.Series([r.key or r.locator for r in good], dtype="string")
    fail(key_col.isna().to_numpy(), "missing_key", f"key field {spec.key!r} is empty")
    key_vals: list[Optional[str]] = [None if v is pd.NA else v for v in key_col.tolist()]

    # text: rendered column-wise from the template's literal parts and fields
    tf = rs.template_fields
    req = spec.text_required
    text = pd.Series([""] * n, dtype="string")
    for lit, field, _spec, _conv in string.Formatter().parse(spec.template):
        if lit:
            text = text + lit
        if field is not None:
            text = text + txt(field).fillna("")
    text = text.str.strip()
    missing = np.column_stack([txt(f).isna().to_numpy() for f in tf]) if n else np.zeros((0, len(tf)), dtype=bool)
    partial = missing.any(axis=1) & ~missing.all(axis=1)
    if partial.any():
        text[partial] = text[partial].str.replace(_TRAIL, "", regex=True).str.replace(_LEAD, "", regex=True)
    empty_text = missing.all(axis=1)
    for f in req:
        empty_text |= txt(f).isna().to_numpy()
    fail(empty_text, "empty_text", f"nothing to render into text (fields {tf}, required {req})")

    # label
    labels = pd.array([pd.NA] * n, dtype="Int8")
    if spec.label is not None:
        ls = spec.label
        lab = label_col(raw(ls.field), ls.case_sensitive)
        absent = lab.isna().to_numpy()
        known = lab.isin(list(ls.mapping)).to_numpy() & ~absent
        if ls.missing == "quarantine":
            fail(absent, "label_missing", f"label field {ls.field!r} is empty")
        if ls.unknown == "quarantine":
            for i in np.flatnonzero(~absent & ~known):
                if reason[i] is None:
                    reason[i], detail[i] = "label_not_in_domain", f"label {str(lab.iloc[i])[:40]!r} not in the mapping"
        mapped = lab.map(ls.mapping).astype("Float64")
        mapped[~known] = pd.NA
        labels = mapped.astype("Int8").array

    # timestamp
    if spec.timestamp is not None:
        ts = spec.timestamp
        raw_ts = raw(ts.field)
        event_time = parse_timestamps(raw_ts, ts.format, ts.timezone)
        if all(v is None or type(v) is str for v in raw_ts):
            empty = txt(ts.field).isna().to_numpy()
        else:
            empty = np.array([to_str(v) is None if not isinstance(v, (datetime, date)) else False for v in raw_ts], dtype=bool)
        nat = event_time.isna().to_numpy()
        fail(nat & ~empty, "invalid_timestamp", f"{ts.field!r} does not parse as {ts.format}")
        if ts.required:
            fail(empty, "missing_timestamp", f"{ts.field!r} is empty")
    else:
        event_time = pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]")

    # group
    group = txt(spec.group) if spec.group else pd.Series([pd.NA] * n, dtype="string")

    # extra columns
    extra_vals: dict[str, Any] = {}
    for src, (col, typ) in rs.columns.items():
        extra_vals[col], bad_mask, what = _convert(raw(src), typ, txt(src) if typ != "bool" else None)
        if bad_mask is not None:
            fail(bad_mask, "invalid_value", f"field {src!r}: {what}")

    # key unique within the source (only among rows that are otherwise valid)
    ok_idx = [i for i in range(n) if reason[i] is None]
    dup = keys.check_and_add([key_vals[i] for i in ok_idx])  # type: ignore[misc]
    for j in np.flatnonzero(dup):
        i = ok_idx[j]
        reason[i], detail[i] = "duplicate_key", f"key field {spec.key!r} repeats an earlier row"

    keep = np.array([r is None for r in reason], dtype=bool)
    for i in np.flatnonzero(~keep):
        quarantine.append(_q(spec.name, good[i], reason[i], detail[i], raw_limit))  # type: ignore[arg-type]

    idx = np.flatnonzero(keep)
    rids = [record_id(spec.name, key_vals[i]) for i in idx]  # type: ignore[arg-type]
    data: dict[str, Any] = {
        "record_id": pd.array(rids, dtype="string"),
        "source": pd.array([spec.name] * len(idx), dtype="string"),
        "source_key": pd.array([key_vals[i] for i in idx], dtype="string"),
        "text": text.iloc[idx].reset_index(drop=True),
        "label": labels[idx],
        "group_id": group.iloc[idx].reset_index(drop=True),
        "event_time": event_time.iloc[idx].reset_index(drop=True).astype("datetime64[us, UTC]"),
        "dup_cluster": pd.array(rids, dtype="string"),
        "label_conflict": pd.array([False] * len(idx), dtype="bool"),
    }
    dtypes = {"string": "string", "float": "Float64", "int": "Int64", "bool": "boolean"}
    if isinstance(spec.dedup, DedupFields):  # internal column, removed before writing
        cols = [txt(f).iloc[idx].tolist() for f in spec.dedup.fields]
        data[DEDUP_KEY] = pd.Series(
            [tuple(None if v is pd.NA else v for v in t) for t in zip(*cols)] if cols else [], dtype=object
        )
    for col in sorted(extras):
        if col in extra_vals:
            data[col] = extra_vals[col][idx]
        else:
            data[col] = pd.array([None] * len(idx), dtype=dtypes[extras[col]])
    return pd.DataFrame(data), quarantine


def _convert(vals: list[Any], typ: str, as_text: Optional[pd.Series]) -> tuple[Any, Optional[np.ndarray], str]:
    """Convert one column to its type: (pandas array, mask of values that do not convert, what went wrong)."""
    if typ == "string":
        assert as_text is not None
        return as_text.array, None, ""
    badm = np.zeros(len(vals), dtype=bool)
    if typ == "bool":
        out: list[Any] = []
        for i, v in enumerate(vals):
            s = norm_label(v)
            if s is None:
                out.append(None)
            elif s in _TRUE:
                out.append(True)
            elif s in _FALSE:
                out.append(False)
            else:
                out.append(None)
                badm[i] = True
        return pd.array(out, dtype="boolean"), badm, "not a boolean"
    assert as_text is not None
    if all(v is None or (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)) for v in vals):
        num = np.array([np.nan if v is None else float(v) for v in vals], dtype=float)
    else:
        num = pd.to_numeric(as_text.astype(object).where(as_text.notna(), None), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )
    empty = as_text.isna().to_numpy()
    nan = np.isnan(num)
    badm = nan & ~empty
    if typ == "int":
        with np.errstate(invalid="ignore"):
            nonint = ~nan & (np.mod(num, 1) != 0)
        badm |= nonint
        num[nonint] = np.nan
        gone = np.isnan(num)
        arr = pd.array(np.where(gone, 0, num).astype("int64"), dtype="Int64")
        arr[gone] = pd.NA
        return arr, badm, "not an integer"
    arr = pd.array(num, dtype="Float64")
    arr[nan] = pd.NA
    return arr, badm, "not a number"


def _q(source: str, row: RawRow, reason: str, detail: str, raw_limit: int) -> dict[str, Any]:
    return {
        "source": source,
        "locator": row.locator,
        "reason": reason,
        "detail": detail,
        "raw": raw_of(row, raw_limit),
    }
