"""Source readers, one per kind, registered by name (`kind:` in schemas/sources.yaml).

A new kind is one `Reader` subclass decorated with `@register` plus its entry in sources.yaml; import the
module here (built-ins) or before calling `run_ingest` (plugins).
"""

from pipeline.sources.base import READERS, RawRow, Reader, ReaderContext, get_reader, register
from pipeline.sources import csv_reader, eml_reader, jsonl_reader, parquet_reader, sql_reader  # noqa: F401,E402

__all__ = ["READERS", "RawRow", "Reader", "ReaderContext", "get_reader", "register"]
