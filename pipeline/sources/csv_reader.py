"""`kind: csv` — delimited text, streamed line by line, every malformed row caught with its physical line.

The stdlib `csv` parser (C, strict mode) runs over a feeder of physical lines that this reader controls. When a
record is malformed (a parse error, or a wrong field count) its *first* physical line is quarantined and any
further lines it swallowed (an unterminated quote) are pushed back and parsed again, so one bad quote never
takes the rest of the file with it. Locator: `line N`, the 1-based physical line where the record starts
(header = line 1).
"""

from __future__ import annotations

import csv
from collections import deque
from typing import Iterator, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.errors import ConfigError
from pipeline.sources.base import RawRow, Reader, bad, register
from pipeline.sources.textio import Line, LineReader, check_text_encoding

_QUOTING = {
    "minimal": csv.QUOTE_MINIMAL,
    "all": csv.QUOTE_ALL,
    "nonnumeric": csv.QUOTE_NONNUMERIC,
    "none": csv.QUOTE_NONE,
}


class CsvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    delimiter: str = Field(",", min_length=1, max_length=1)
    quotechar: str = Field('"', min_length=1, max_length=1)
    quoting: Literal["minimal", "all", "nonnumeric", "none"] = "minimal"
    escapechar: Optional[str] = Field(None, min_length=1, max_length=1)
    doublequote: bool = True
    skipinitialspace: bool = False
    encoding: str = "utf-8"
    compression: Literal["auto", "gzip", "none"] = "auto"
    header: bool = True
    columns: Optional[list[str]] = None  # names when the file has no header row

    @field_validator("delimiter", "quotechar")
    @classmethod
    def _not_newline(cls, v: str) -> str:
        if v in "\r\n":
            raise ValueError("must not be a line break")
        return v


class _Feeder:
    """Iterator of physical lines for `csv.reader`; remembers the lines of the current record and accepts
    lines pushed back for re-parsing."""

    def __init__(self, lines: Iterator[Line]) -> None:
        self._lines = lines
        self.pending: deque[Line] = deque()
        self.current: list[Line] = []

    def __iter__(self) -> "_Feeder":
        return self

    def __next__(self) -> str:
        line = self.pending.popleft() if self.pending else next(self._lines)
        self.current.append(line)
        return line.text

    def push_back(self, lines: list[Line]) -> None:
        self.pending.extendleft(reversed(lines))


@register
class CsvReader(Reader):
    kind = "csv"
    Options = CsvOptions
    location = "file"

    def _where(self) -> str:
        return f"source {self.ctx.source!r} ({self.ctx.location})"

    def rows(self) -> Iterator[RawRow]:
        o: CsvOptions = self.options  # type: ignore[assignment]
        encoding = check_text_encoding(o.encoding, self._where())
        if not o.header and not o.columns:
            raise ConfigError(f"{self._where()}: header: false needs `columns`")
        ctx = self.ctx
        # a line may hold a few fields at the limit; beyond this the line is cut and quarantined
        max_line = max(64 * ctx.max_field_bytes, 64 << 20)
        previous = csv.field_size_limit(max(ctx.max_field_bytes, 1))  # process-wide: restored when done
        try:
            yield from self._rows(o, encoding, max_line)
        finally:
            csv.field_size_limit(previous)

    def _rows(self, o: CsvOptions, encoding: str, max_line: int) -> Iterator[RawRow]:
        ctx = self.ctx
        with LineReader(ctx.location, encoding, o.compression, max_line) as lr:
            if lr.empty:
                yield bad("file", "empty_file", "the file is empty")
                return
            if lr.bom:
                self.notes.append("UTF-8 byte order mark stripped")
            if lr.binary:
                yield bad("file", "binary_content", "the file does not look like text", raw=lr._first[:1024])
                return
            feeder = _Feeder(iter(lr))
            reader = csv.reader(
                feeder,
                delimiter=o.delimiter,
                quotechar=o.quotechar,
                quoting=_QUOTING[o.quoting],
                escapechar=o.escapechar,
                doublequote=o.doublequote,
                skipinitialspace=o.skipinitialspace,
                strict=True,
            )
            header = list(o.columns or [])
            if o.header:
                head = yield from self._header(reader, feeder, lr)
                if head is None:
                    return
                if not o.columns:
                    header = head
            ncols = len(header)
            index: dict[str, int] = {}
            for i, name in enumerate(header):
                index.setdefault(name, i)
            if len(index) < len(header):
                self.notes.append("repeated header names: the first column of each name is used")
            missing = sorted(f for f in ctx.needed if f not in index)
            if missing:
                shown = missing if len(missing) <= 6 else [*missing[:5], f"... {len(missing) - 5} more"]
                hint = _delimiter_hint(_join(feeder.current) if o.header and not o.columns else "", o.delimiter)
                raise ConfigError(f"{self._where()}: header lacks {len(missing)} of the {len(ctx.needed)} field(s) "
                                  f"named in the source config {shown}{hint}")
            picks = [(f, index[f]) for f in sorted(ctx.needed)]
            n_rows = 0
            while True:
                feeder.current = []
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    n_rows += 1
                    yield from self._resync(feeder, _csv_reason(exc), _one_line(exc))
                    continue
                lines = feeder.current
                if not rec and len(lines) == 1:
                    continue  # blank line: not a record
                n_rows += 1
                start = lines[0].no
                if len(lines) == 1:
                    problem = lines[0].problem
                else:
                    problem = next((ln.problem for ln in lines if ln.problem), None)
                if problem:
                    # an undecodable or cut line spoils only its own record
                    detail = "bytes not valid " + encoding if problem == "bad_encoding" else "line too long"
                    if len(lines) > 1:
                        yield from self._resync(feeder, problem, detail)
                    else:
                        yield bad(f"line {start}", problem, detail, raw=lines[0].text)
                    continue
                if len(rec) != ncols:
                    detail = f"{len(rec)} field(s), expected {ncols}"
                    if len(lines) > 1:
                        yield from self._resync(feeder, "malformed_row", detail)
                    else:
                        yield bad(f"line {start}", "field_count_mismatch", detail, raw=lines[0].text)
                    continue
                if ("\x00" in lines[0].text) if len(lines) == 1 else any("\x00" in ln.text for ln in lines):
                    yield bad(f"line {start}", "nul_byte", "the row contains a NUL byte", raw=_join(lines))
                    continue
                yield RawRow(f"line {start}", {f: rec[i] for f, i in picks})
            if lr.read_error:
                yield bad("file", "truncated_file", f"the stream broke off ({lr.read_error})")
            elif n_rows == 0:
                yield bad("file", "no_rows", "the file has a header but no rows")

    def _header(self, reader, feeder: _Feeder, lr: Optional[LineReader] = None):
        """Parse the header row; on trouble quarantine the whole file (every record) and return None."""
        ctx = self.ctx
        try:
            head = next(reader)
        except StopIteration:
            if lr is not None and lr.read_error:
                # not an empty file: the stream broke off before the first line (truncated, or not really gzip)
                yield bad("file", "truncated_file", f"the stream broke off ({lr.read_error})")
            else:
                yield bad("file", "empty_file", "the file has no rows")
            return None
        except csv.Error as exc:
            head, reason, detail = None, "malformed_header", _one_line(exc)
        else:
            reason = detail = ""
            if any(ln.problem for ln in feeder.current):
                reason, detail = "malformed_header", "header line not decodable or too long"
            elif len(head) > ctx.max_columns:
                reason, detail = "too_many_columns", f"{len(head)} columns > ingest.max_columns={ctx.max_columns}"
        if not reason:
            return [h.strip() for h in head]
        # account for every record of a file whose header is refused: one row each, cheaply
        yield bad("line 1", reason, detail, raw=_join(feeder.current))
        for ln in feeder._lines:
            if ln.text.strip():
                yield bad(f"line {ln.no}", "header_rejected", "the file's header was refused", raw=ln.text)
        return None

    @staticmethod
    def _resync(feeder: _Feeder, reason: str, detail: str) -> Iterator[RawRow]:
        lines = feeder.current
        feeder.current = []
        if not lines:
            return
        first = lines[0]
        if len(lines) > 1:
            detail = f"{detail}; re-reading the {len(lines) - 1} line(s) after it"
        yield bad(f"line {first.no}", reason, detail, raw=first.text)
        feeder.push_back(lines[1:])


def _delimiter_hint(header_line: str, delimiter: str) -> str:
    """'; the header looks ';'-delimited: set `options.delimiter: ";"`' when another delimiter splits the
    header line better (csv.Sniffer over the header); '' otherwise. Names no header value (it could be data)."""
    line = header_line.strip("\r\n")
    if not line:
        return ""
    try:
        found = csv.Sniffer().sniff(line, delimiters=",;\t|").delimiter
    except csv.Error:
        counts = {d: line.count(d) for d in ",;\t|"}
        found = max(counts, key=lambda d: counts[d])
        if not counts[found]:
            return ""
    if found == delimiter or line.count(found) <= line.count(delimiter):
        return ""
    shown = "\\t" if found == "\t" else found
    return f"; the header looks '{shown}'-delimited: set `options.delimiter: \"{shown}\"` for this source"


def _csv_reason(exc: csv.Error) -> str:
    msg = str(exc)
    if "field larger than field limit" in msg:
        return "field_too_large"
    return "malformed_row"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def _join(lines: list[Line]) -> str:
    return "".join(ln.text for ln in lines)
