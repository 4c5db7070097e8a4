"""The source config (`schemas/sources.yaml`): pydantic models, validation and safe location resolution.

Every problem is a `ConfigError` with one line naming the file, the source and the problem (exit 2).

Locations: relative paths resolve against the repository root; `${raw}` (or any `${NAME}` of the `paths:`
section of params.yaml) expands to that path, so the same config reads `data/01_raw` in the pipeline and a
test folder with `--set paths.raw=/tmp/x`. A location must stay inside the repository, inside the folder its
`${NAME}` named, or inside a folder listed under `allowed_roots:`: `..` traversal, absolute paths and
symlinks that lead elsewhere are refused.
"""

from __future__ import annotations

import os
import string
import zoneinfo
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import Params
from pipeline.errors import ConfigError
from pipeline.sources.base import Reader, ReaderContext, get_reader
from pipeline.sources.schema import record_schema

NAME_RE = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
COLUMN_RE = r"^[a-z][a-z0-9_]{0,63}$"
ColumnType = Literal["string", "float", "int", "bool"]


def norm_label(value: Any, case_sensitive: bool = False) -> Optional[str]:
    """Canonical string of a label value: True/'True'/'true' -> 'true', 1/1.0/'1' -> '1', None/'' -> None."""
    if value is None:
        return None
    if isinstance(value, bool):
        s = "true" if value else "false"
    elif isinstance(value, int):
        s = str(value)
    elif isinstance(value, float):
        if value != value:
            return None
        s = str(int(value)) if value.is_integer() else str(value)
    else:
        s = str(value).strip()
        if s.endswith(".0") and s[:-2].lstrip("-").isdigit():
            s = s[:-2]
    if not s:
        return None
    if s.lower() in ("true", "false"):
        s = s.lower()
    return s if case_sensitive else s.casefold()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LabelSpec(_Strict):
    field: str = Field(min_length=1)
    mapping: dict[str, Optional[Literal[0, 1]]]
    unknown: Literal["quarantine", "null"] = "quarantine"  # a value not in `mapping`
    missing: Literal["quarantine", "null"] = "quarantine"  # an empty value
    case_sensitive: bool = False

    @model_validator(mode="before")
    @classmethod
    def _keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("mapping"), dict):
            cs = bool(data.get("case_sensitive", False))
            mapping = {}
            for k, v in data["mapping"].items():
                nk = norm_label(k, cs)
                if nk is None:
                    raise ValueError(f"label mapping key {k!r} is empty")
                if isinstance(v, bool):
                    v = int(v)
                mapping[nk] = v
            data = {**data, "mapping": mapping}
        return data

    @field_validator("mapping")
    @classmethod
    def _not_empty(cls, v: dict) -> dict:
        if not v:
            raise ValueError("label mapping is empty")
        return v


class TimestampSpec(_Strict):
    field: str = Field(min_length=1)
    format: str = "ISO8601"  # ISO8601 | rfc2822 | epoch_s | epoch_ms | a strptime pattern (%Y-%m-%d ...)
    timezone: str = "UTC"  # applied to values without an offset
    required: bool = False  # a missing timestamp quarantines the row (otherwise event_time is null)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @field_validator("format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        if v not in ("ISO8601", "rfc2822", "epoch_s", "epoch_ms") and "%" not in v:
            raise ValueError("format must be ISO8601, rfc2822, epoch_s, epoch_ms or a strptime pattern")
        return v


class FieldSpec(_Strict):
    column: str = Field(pattern=COLUMN_RE)
    type: Optional[ColumnType] = None
    # true: the anonymize stage counts this column as a quasi-identifier (k-anonymity, reidentification.*)
    quasi_identifier: bool = False


class TextSpec(_Strict):
    template: str = Field(min_length=1)  # {field} placeholders
    required: list[str] = Field(default_factory=list)  # an empty one of these -> quarantine (empty_text)


class DedupFields(_Strict):
    fields: list[str] = Field(min_length=1)  # records agreeing on all these fields are one event


class SourceSpec(_Strict):
    name: str = Field(pattern=NAME_RE)
    kind: str
    location: Optional[str] = None
    options: dict[str, Any] = Field(default_factory=dict)
    key: Optional[str] = None  # field holding the native id; null: the reader's own key (eml) or the locator
    group: Optional[str] = None  # field holding the customer / account
    timestamp: Optional[TimestampSpec] = None
    label: Optional[LabelSpec] = None  # null: the source is unlabeled (label is null)
    fields: dict[str, Union[str, FieldSpec]] = Field(default_factory=dict)  # source field -> record column
    text: Union[str, TextSpec]  # template ("{subject}: {body}") or {template, required}
    # true: text exact/near duplicates across every source with dedup: true; {fields: [...]}: duplicates within
    # this source are records agreeing on those fields; false: no deduplication
    dedup: Union[bool, DedupFields] = True
    # true: the source may be empty (an empty file, a header only, no matching files); otherwise ingest fails (exit 1)
    optional: bool = False

    @field_validator("text")
    @classmethod
    def _text(cls, v: Union[str, TextSpec]) -> TextSpec:
        return TextSpec(template=v) if isinstance(v, str) else v

    @property
    def template(self) -> str:
        assert isinstance(self.text, TextSpec)
        return self.text.template

    @property
    def text_required(self) -> list[str]:
        assert isinstance(self.text, TextSpec)
        return self.text.required

    @field_validator("fields")
    @classmethod
    def _fields(cls, v: dict) -> dict:
        out = {}
        for src, spec in v.items():
            out[src] = FieldSpec(column=spec) if isinstance(spec, str) else spec
        return out


class SourcesConfig(_Strict):
    version: Literal[1] = 1
    allowed_roots: list[str] = Field(default_factory=list)  # folders outside the repo a location may use
    sources: list[SourceSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> "SourcesConfig":
        seen = set()
        for s in self.sources:
            if s.name in seen:
                raise ValueError(f"source name {s.name!r} appears twice")
            seen.add(s.name)
        return self


def template_fields(template: str, where: str) -> list[str]:
    """Placeholders of a text template; only plain `{field}` is allowed (no attribute, index, format)."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: text template: {exc}") from None
    for _lit, name, spec, conv in parsed:
        if name is None:
            continue
        if not name or any(c in name for c in ".[]") or spec or conv:
            raise ConfigError(f"{where}: text template placeholder {{{name}}} must be a plain {{field}}")
        if name not in names:
            names.append(name)
    if not names:
        raise ConfigError(f"{where}: text template names no field")
    return names


@dataclass
class ResolvedSource:
    index: int
    spec: SourceSpec
    reader_cls: type[Reader]
    options: BaseModel
    ctx: ReaderContext
    template_fields: list[str]
    columns: dict[str, tuple[str, ColumnType]]  # source field -> (record column, type)

    @property
    def name(self) -> str:
        return self.spec.name

    def reader(self) -> Reader:
        return self.reader_cls(self.options, self.ctx)


@dataclass
class Resolved:
    path: Path
    config: SourcesConfig
    sources: list[ResolvedSource]
    extras: dict[str, ColumnType]  # record extra column -> type (union over sources)


def load_sources(path: str | Path, params: Params, repo_root: Path) -> Resolved:
    """Read, validate and resolve a sources.yaml (every error: ConfigError, one line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: source config not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with a `sources:` list")
    try:
        cfg = SourcesConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _loc(first["loc"], data)
        raise ConfigError(f"{path}: {loc}: {first['msg']} ({exc.error_count()} error(s))") from None

    schema = record_schema()
    allowed = [_abs(Path(a), repo_root) for a in cfg.allowed_roots]
    extras: dict[str, ColumnType] = {}
    extra_owner: dict[str, str] = {}
    out: list[ResolvedSource] = []
    for i, spec in enumerate(cfg.sources):
        where = f"{path}: source {spec.name!r}"
        try:
            reader_cls = get_reader(spec.kind)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        try:
            options = reader_cls.Options.model_validate(spec.options)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"]) or "options"
            raise ConfigError(f"{where}: options.{loc}: {first['msg']}") from None

        location, base = _resolve_location(spec, reader_cls, params, repo_root, allowed, where)

        tfields = template_fields(spec.template, where)
        stray = sorted(set(spec.text_required) - set(tfields))
        if stray:
            raise ConfigError(f"{where}: text.required names {stray}, which the template does not use")
        columns: dict[str, tuple[str, ColumnType]] = {}
        for src, fs in spec.fields.items():
            assert isinstance(fs, FieldSpec)
            col = fs.column
            if col in schema.CORE_COLUMNS:
                raise ConfigError(f"{where}: fields: {src!r} -> {col!r} would overwrite a core record column")
            if col in {c for c, _ in columns.values()}:
                raise ConfigError(f"{where}: fields: two source fields map to column {col!r}")
            known = schema.EXTRA_COLUMNS.get(col)
            typ: ColumnType = fs.type or known or "string"
            if known and fs.type and fs.type != known:
                raise ConfigError(f"{where}: fields: column {col!r} is {known} in the record schema, not {fs.type}")
            if col in extras and extras[col] != typ:
                raise ConfigError(
                    f"{where}: fields: column {col!r} is {typ} here but {extras[col]} in source {extra_owner[col]!r}"
                )
            extras[col] = typ
            extra_owner.setdefault(col, spec.name)
            columns[src] = (col, typ)
        pii_in_text = sorted(f for f in tfields if f in columns and columns[f][0] in schema.PII_COLUMNS)
        if pii_in_text:
            raise ConfigError(
                f"{where}: text template renders PII column field(s) {pii_in_text}; keep PII columns out of `text`"
            )
        needed = set(tfields) | set(columns)
        if isinstance(spec.dedup, DedupFields):
            needed |= set(spec.dedup.fields)
        for extra in (spec.key, spec.group, spec.label.field if spec.label else None,
                      spec.timestamp.field if spec.timestamp else None):
            if extra:
                needed.add(extra)
        ctx = ReaderContext(
            source=spec.name,
            location=location,
            base=base,
            needed=frozenset(needed),
            key_field=spec.key,
            chunk_rows=params.ingest.chunk_rows,
            max_field_bytes=params.ingest.max_field_bytes,
            max_columns=params.ingest.max_columns,
            repo_root=repo_root,
        )
        out.append(ResolvedSource(i, spec, reader_cls, options, ctx, tfields, columns))
    return Resolved(path=path, config=cfg, sources=out, extras=extras)


def _abs(p: Path, root: Path) -> Path:
    return Path(os.path.normpath(p if p.is_absolute() else root / p))


def _within(p: Path, base: Path) -> bool:
    return p == base or base in p.parents


def _resolve_location(
    spec: SourceSpec, reader_cls: type[Reader], params: Params, repo_root: Path, allowed: list[Path], where: str
) -> tuple[Optional[Path], Optional[Path]]:
    if spec.location is None:
        if reader_cls.location == "optional":
            return None, None
        raise ConfigError(f"{where}: kind {spec.kind} needs a location")
    raw = spec.location.strip()
    variables = {k: str(v) for k, v in params.paths.model_dump().items() if v is not None}
    try:
        tmpl = string.Template(raw)
        used = [m.group("braced") or m.group("named") for m in tmpl.pattern.finditer(raw) if m.group("braced") or m.group("named")]
        expanded = tmpl.substitute(variables)
    except KeyError as exc:
        raise ConfigError(f"{where}: unknown variable ${{{exc.args[0]}}} in location (known: {', '.join(sorted(variables))})") from None
    except ValueError:
        raise ConfigError(f"{where}: invalid `$` placeholder in location {raw!r}") from None
    if Path(raw).is_absolute():
        bases = list(allowed)
        kind_msg = "an absolute location outside allowed_roots"
    else:
        bases = [_abs(Path("."), repo_root), *allowed, *(_abs(Path(variables[u]), repo_root) for u in used)]
        kind_msg = "the location leaves the repository (path traversal)"
    lexical = _abs(Path(expanded), repo_root)
    if not any(_within(lexical, b) for b in bases):
        raise ConfigError(f"{where}: {kind_msg}: {raw!r}; list the folder under allowed_roots to permit it")
    if not lexical.exists():
        raise ConfigError(f"{where}: location {raw!r} not found ({lexical})")
    real = lexical.resolve()
    real_bases = [b.resolve() for b in bases if b.exists()]
    if not any(_within(real, b) for b in real_bases):
        raise ConfigError(f"{where}: location {raw!r} is a symlink to a path outside the allowed folders (refused)")
    if reader_cls.location == "file" and not real.is_file():
        raise ConfigError(f"{where}: location {raw!r} is not a file")
    if reader_cls.location == "dir" and not real.is_dir():
        raise ConfigError(f"{where}: location {raw!r} is not a folder")
    base = next(b for b in real_bases if _within(real, b))
    return lexical, base


def _loc(loc: tuple, data: dict) -> str:
    """Readable location of a validation error: sources[2] 'emails'.label.mapping."""
    parts: list[str] = []
    cur: Any = data
    for x in loc:
        if isinstance(x, int) and parts:
            name = cur[x].get("name") if isinstance(cur, list) and x < len(cur) and isinstance(cur[x], dict) else None
            parts[-1] += f"[{x}]" + (f" {name!r}" if name else "")
        else:
            parts.append(str(x))
        try:
            cur = cur[x]
        except (KeyError, IndexError, TypeError):
            cur = None
    return ".".join(parts)
