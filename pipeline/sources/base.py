"""Reader interface and registry: a source kind is one `Reader` subclass decorated with `@register`.

A reader turns one source location into a stream of `RawRow`s: the raw field values of one row plus its row
locator (docs/data_contracts.md). A row the reader cannot parse is still yielded, with a `reason`, so the
ledger counts it and the quarantine keeps it: readers never drop anything silently and never raise on bad
data (bad configuration raises `ConfigError`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Optional

from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError

RAW_LIMIT_DEFAULT = 10_240


@dataclass(slots=True)
class RawRow:
    """One row as read. `fields` is None when the reader could not parse the row (then `reason` is set)."""

    locator: str
    fields: Optional[dict[str, Any]] = None
    reason: Optional[str] = None
    detail: str = ""
    raw: Optional[str] = None  # original content, only kept for rows that go to quarantine
    key: Optional[str] = None  # native key the reader knows (eml: the file name); None: from the key field

    @property
    def ok(self) -> bool:
        return self.reason is None


def bad(locator: str, reason: str, detail: str = "", raw: Any = None) -> RawRow:
    return RawRow(locator=locator, reason=reason, detail=detail, raw=_raw_text(raw))


def _raw_text(raw: Any) -> Optional[str]:
    if raw is None:
        return None
    if isinstance(raw, bytes):
        return raw[: RAW_LIMIT_DEFAULT * 4].decode("utf-8", errors="replace")
    if isinstance(raw, str):
        return raw
    return json.dumps(raw, default=str, ensure_ascii=False)


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ReaderContext:
    """What a reader needs besides its options: resolved location, limits and the fields the config names."""

    source: str
    location: Optional[Path]
    base: Optional[Path]  # folder the location was resolved in (symlinks must not leave it)
    needed: frozenset[str]  # source fields the config references (key, label, group, timestamp, fields, text)
    key_field: Optional[str]
    chunk_rows: int = 50_000
    max_field_bytes: int = 1_000_000
    max_columns: int = 10_000
    repo_root: Path = field(default_factory=Path.cwd)


class Reader:
    """Base class. Subclasses set `kind`, optionally `Options` (a pydantic model, extra keys forbidden) and
    `location` ("file", "dir", "file_or_dir" or "optional"), and implement `rows()`."""

    kind: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    location: ClassVar[str] = "file"

    def __init__(self, options: BaseModel, ctx: ReaderContext) -> None:
        self.options = options
        self.ctx = ctx
        self.notes: list[str] = []  # source-level observations for metrics.json (no values)

    def rows(self) -> Iterator[RawRow]:  # pragma: no cover - interface
        raise NotImplementedError

    def check_value_sizes(self, fields: dict[str, Any]) -> Optional[tuple[str, str]]:
        """Reason for a row whose referenced values are too large or carry NUL bytes (None when fine)."""
        limit = self.ctx.max_field_bytes
        for name in self.ctx.needed:
            v = fields.get(name)
            if isinstance(v, str):
                try:
                    size = len(v.encode("utf-8"))
                except UnicodeEncodeError:  # a lone surrogate (e.g. a JSON "\\ud800" escape): not text
                    return "bad_encoding", f"field {name!r} is not valid Unicode text"
                if size > limit:
                    return "field_too_large", f"field {name!r} larger than {limit} bytes"
                if "\x00" in v:
                    return "nul_byte", f"field {name!r} contains a NUL byte"
        return None


READERS: dict[str, type[Reader]] = {}


def register(cls: type[Reader]) -> type[Reader]:
    """Class decorator: make a reader available under `cls.kind` in sources.yaml."""
    if not cls.kind:
        raise TypeError(f"{cls.__name__}: set `kind`")
    READERS[cls.kind] = cls
    return cls


def get_reader(kind: str) -> type[Reader]:
    try:
        return READERS[kind]
    except KeyError:
        raise ConfigError(f"unknown kind {kind!r} (known: {', '.join(sorted(READERS))})") from None
