"""`kind: sql` — rows of a table or query through SQLAlchemy, streamed. Locator: the key (primary key) value.

`location` is an SQLite file (relative paths resolve against the repository root, opened read-only); any other
database is named by `options.url` or, to keep credentials out of the config, `options.url_env` (the name of an
environment variable holding the URL).
"""

from __future__ import annotations

import os
from typing import Iterator, Optional

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.errors import ConfigError
from pipeline.sources.base import RawRow, Reader, bad, register

_DATA_ERRORS = ("file is not a database", "database disk image is malformed", "unable to open database")


class _BadText(str):
    """A TEXT value whose bytes were not valid UTF-8 (decoded with replacement characters)."""


def _decode_text(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return _BadText(b.decode("utf-8", errors="replace"))


class SqlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Optional[str] = None
    url_env: Optional[str] = None
    table: Optional[str] = Field(None, min_length=1)
    query: Optional[str] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> "SqlOptions":
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.url and self.url_env:
            raise ValueError("give at most one of `url` or `url_env`")
        return self


@register
class SqlReader(Reader):
    kind = "sql"
    Options = SqlOptions
    location = "optional"  # the SQLite file; absent when a url is given

    def _url(self) -> sa.URL | str:
        o: SqlOptions = self.options  # type: ignore[assignment]
        ctx = self.ctx
        if o.url_env:
            url = os.environ.get(o.url_env)
            if not url:
                raise ConfigError(f"source {ctx.source!r}: environment variable {o.url_env} (url_env) is not set")
            return url
        if o.url:
            return o.url
        if ctx.location is None:
            raise ConfigError(f"source {ctx.source!r}: kind sql needs a location (SQLite file) or options.url")
        return f"sqlite:///file:{ctx.location}?mode=ro&uri=true"

    def rows(self) -> Iterator[RawRow]:
        o: SqlOptions = self.options  # type: ignore[assignment]
        ctx = self.ctx
        where = f"source {ctx.source!r}"
        try:
            engine = sa.create_engine(self._url())
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ValueError) as exc:
            raise ConfigError(f"{where}: invalid database URL ({type(exc).__name__})") from None
        if engine.dialect.name == "sqlite":
            # undecodable TEXT spoils its own row only (sqlite3 would otherwise abort the whole read)
            sa.event.listen(engine, "connect", lambda dbapi_conn, _rec: setattr(dbapi_conn, "text_factory", _decode_text))
        if o.table is not None:
            q = engine.dialect.identifier_preparer.quote
            sql = f"SELECT * FROM {q(o.table)}"
            if ctx.key_field:
                sql += f" ORDER BY {q(ctx.key_field)}"
        else:
            sql = o.query  # type: ignore[assignment]
        n = 0
        try:
            with engine.connect() as conn:
                try:
                    result = conn.execution_options(stream_results=True, yield_per=ctx.chunk_rows).execute(sa.text(sql))
                except sa.exc.DBAPIError as exc:
                    msg = " ".join(str(exc.orig).split())[:200]
                    if any(m in msg for m in _DATA_ERRORS):
                        yield bad("file", "unreadable_file", msg)
                        return
                    raise ConfigError(f"{where}: query failed: {msg}") from None
                cols = set(result.keys())
                missing = sorted(f for f in ctx.needed if f not in cols)
                if missing:
                    raise ConfigError(f"{where}: columns {missing} named in the source config are not in the result")
                needed = sorted(ctx.needed)
                for m in result.mappings():
                    fields = {f: m[f] for f in needed}
                    key = fields.get(ctx.key_field) if ctx.key_field else None
                    loc = str(key) if key is not None and str(key) != "" else f"row {n}"
                    n += 1
                    problem = self.check_value_sizes(fields)
                    if problem is None and any(isinstance(v, _BadText) for v in fields.values()):
                        problem = ("bad_encoding", "a TEXT value is not valid UTF-8")
                    if problem:
                        yield bad(loc, problem[0], problem[1], raw=fields)
                    else:
                        yield RawRow(loc, fields)
        except sa.exc.DBAPIError as exc:
            msg = " ".join(str(exc.orig).split())[:200]
            yield bad(f"row {n}", "unreadable_file", f"reading stopped: {msg}")
            return
        finally:
            engine.dispose()
        if n == 0:
            yield bad("file", "no_rows", "the table or query returned no rows")
