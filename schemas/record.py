"""Record schema of the ingested table (`data/02_ingested/records.parquet`, docs/data_contracts.md).

One pydantic model declares the columns, their Arrow types and whether they may be null; the ingest stage
derives its vectorised pandas checks and the Parquet schema from it, so the contract lives in one place.
Extra columns (`fields:` in sources.yaml) take their type from `EXTRA_COLUMNS` when they are known, or from the
source config (`type:`), string by default.

This file is self-contained (pydantic, pandas, pyarrow only): `pipeline.sources.schema` loads it by path, because
`schemas/` is not an installed package.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Optional

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

ColumnType = Literal["string", "float", "int", "bool"]

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
}
PANDAS_TYPES: dict[str, str] = {"string": "string", "float": "Float64", "int": "Int64", "bool": "boolean"}


class Record(BaseModel):
    """One ingested record (core columns). `extra="allow"`: the extra columns declared per source ride along."""

    model_config = ConfigDict(extra="allow")

    record_id: str = Field(pattern=r"^[0-9a-f]{16}$", json_schema_extra={"arrow": "string", "nullable": False})
    source: str = Field(min_length=1, json_schema_extra={"arrow": "string", "nullable": False})
    source_key: str = Field(min_length=1, json_schema_extra={"arrow": "string", "nullable": False})
    text: str = Field(min_length=1, json_schema_extra={"arrow": "string", "nullable": False})
    label: Optional[Literal[0, 1]] = Field(None, json_schema_extra={"arrow": "int8", "nullable": True})
    group_id: Optional[str] = Field(None, json_schema_extra={"arrow": "string", "nullable": True})
    event_time: Optional[datetime] = Field(None, json_schema_extra={"arrow": "timestamp_utc", "nullable": True})
    dup_cluster: str = Field(json_schema_extra={"arrow": "string", "nullable": False})
    label_conflict: bool = Field(False, json_schema_extra={"arrow": "bool", "nullable": False})


_CORE_ARROW = {
    "string": pa.string(),
    "int8": pa.int8(),
    "bool": pa.bool_(),
    "timestamp_utc": pa.timestamp("us", tz="UTC"),
}

CORE_COLUMNS: tuple[str, ...] = tuple(Record.model_fields)
REQUIRED_COLUMNS: tuple[str, ...] = tuple(
    n for n, f in Record.model_fields.items() if not (f.json_schema_extra or {}).get("nullable", True)
)

# PII columns: the anonymizer treats each per column (drop, pseudonymize, generalize). They must never be
# rendered into `text` by a template (the anonymizer only scans `text` for entities).
PII_COLUMNS: frozenset[str] = frozenset(
    {
        "card_number",
        "iban",
        "email",
        "phone",
        "ip_address",
        "customer_name",
        "street_address",
        "postcode",
        "date_of_birth",
    }
)

# Known extra columns and their types; anything else is a string unless its source config says otherwise.
EXTRA_COLUMNS: dict[str, ColumnType] = {
    "amount": "float",
    "currency": "string",
    "channel": "string",
    "merchant_category": "string",
    "merchant_id": "string",
    "tx_type": "string",
    "terminal_id": "string",
    "fraud_scenario": "string",
    "conversation_id": "string",
    "case_id": "string",
    "analyst": "string",
    "rule": "string",
    "score": "float",
    "subject": "string",
    **{c: "string" for c in sorted(PII_COLUMNS)},
}


def core_arrow_fields() -> list[pa.Field]:
    out = []
    for name, f in Record.model_fields.items():
        extra = f.json_schema_extra or {}
        out.append(pa.field(name, _CORE_ARROW[extra["arrow"]], nullable=bool(extra.get("nullable", True))))
    return out


def arrow_schema(extras: dict[str, ColumnType]) -> pa.Schema:
    """Core columns in contract order, then the extra columns sorted by name (all nullable)."""
    fields = core_arrow_fields()
    fields += [pa.field(name, ARROW_TYPES[t], nullable=True) for name, t in sorted(extras.items())]
    return pa.schema(fields)


def check_frame(df: pd.DataFrame, extras: dict[str, ColumnType]) -> list[str]:
    """Vectorised checks of a record frame against the model; returns problems (empty when valid)."""
    problems: list[str] = []
    expected = list(CORE_COLUMNS) + sorted(extras)
    if list(df.columns) != expected:
        problems.append(f"columns {list(df.columns)} != {expected}")
        return problems
    for col in REQUIRED_COLUMNS:
        n = int(df[col].isna().sum())
        if n:
            problems.append(f"{col}: {n} null value(s)")
    if len(df):
        if not df["record_id"].astype("string").str.fullmatch(r"[0-9a-f]{16}").all():
            problems.append("record_id: not 16 hex characters")
        if (df["text"].astype("string").str.strip().str.len() == 0).any():
            problems.append("text: empty")
        lab = df["label"].dropna()
        if len(lab) and not lab.isin([0, 1]).all():
            problems.append("label: outside {0, 1}")
        if not df["record_id"].is_unique:
            problems.append("record_id: not unique")
    return problems
