"""`kind: parquet` — a Parquet file read in record batches of `ingest.chunk_rows`. Locator: `row N` (0-based)."""

from __future__ import annotations

from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError
from pipeline.sources.base import RawRow, Reader, bad, register


class ParquetOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@register
class ParquetReader(Reader):
    kind = "parquet"
    Options = ParquetOptions
    location = "file"

    def rows(self) -> Iterator[RawRow]:
        ctx = self.ctx
        try:
            pf = pq.ParquetFile(ctx.location)
        except (pa.ArrowException, OSError) as exc:
            yield bad("file", "unreadable_file", f"not a readable Parquet file ({type(exc).__name__})")
            return
        names = set(pf.schema_arrow.names)
        missing = sorted(f for f in ctx.needed if f not in names)
        if missing:
            raise ConfigError(
                f"source {ctx.source!r} ({ctx.location}): columns {missing} named in the source config are absent"
            )
        columns = sorted(ctx.needed)
        row = 0
        try:
            for batch in pf.iter_batches(batch_size=ctx.chunk_rows, columns=columns):
                for fields in batch.to_pylist():
                    problem = self.check_value_sizes(fields)
                    if problem:
                        yield bad(f"row {row}", problem[0], problem[1], raw=fields)
                    else:
                        yield RawRow(f"row {row}", fields)
                    row += 1
        except (pa.ArrowException, OSError) as exc:
            yield bad(f"row {row}", "unreadable_file", f"reading stopped at this row ({type(exc).__name__})")
            return
        if row == 0:
            yield bad("file", "no_rows", "the file has no rows")
