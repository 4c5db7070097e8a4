"""`kind: jsonl` — one JSON object per line (optionally gzip-compressed). Locator: `line N` (1-based)."""

from __future__ import annotations

import json
from typing import Iterator, Literal

from pydantic import BaseModel, ConfigDict

from pipeline.sources.base import RawRow, Reader, bad, register
from pipeline.sources.textio import LineReader, check_text_encoding


class JsonlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    encoding: str = "utf-8"
    compression: Literal["auto", "gzip", "none"] = "auto"


@register
class JsonlReader(Reader):
    kind = "jsonl"
    Options = JsonlOptions
    location = "file"

    def rows(self) -> Iterator[RawRow]:
        o: JsonlOptions = self.options  # type: ignore[assignment]
        ctx = self.ctx
        encoding = check_text_encoding(o.encoding, f"source {ctx.source!r} ({ctx.location})")
        max_line = max(4 * ctx.max_field_bytes, 1 << 20)
        decoder = json.JSONDecoder()
        needed = sorted(ctx.needed)
        with LineReader(ctx.location, encoding, o.compression, max_line) as lr:
            if lr.empty:
                yield bad("file", "empty_file", "the file is empty")
                return
            if lr.bom:
                self.notes.append("UTF-8 byte order mark stripped")
            if lr.binary:
                yield bad("file", "binary_content", "the file does not look like text", raw=lr._first[:1024])
                return
            n = 0
            for line in lr:
                text = line.text.strip()
                if not text:
                    continue
                n += 1
                loc = f"line {line.no}"
                if line.problem == "record_too_large":
                    yield bad(loc, "record_too_large", f"line longer than {max_line} bytes", raw=text)
                    continue
                if line.problem:
                    yield bad(loc, line.problem, f"bytes not valid {encoding}", raw=text)
                    continue
                if "\x00" in text:
                    yield bad(loc, "nul_byte", "the line contains a NUL byte", raw=text)
                    continue
                try:
                    obj = decoder.decode(text)
                except RecursionError:
                    yield bad(loc, "json_too_deep", "JSON nested too deeply", raw=text)
                    continue
                except json.JSONDecodeError as exc:
                    reason = "truncated_json" if ("Unterminated" in exc.msg or exc.pos >= len(text) - 1) else "invalid_json"
                    yield bad(loc, reason, f"{exc.msg} (char {exc.pos})", raw=text)
                    continue
                if not isinstance(obj, dict):
                    yield bad(loc, "not_an_object", f"a JSON {type(obj).__name__}, not an object", raw=text)
                    continue
                fields = {f: obj.get(f) for f in needed}
                problem = self.check_value_sizes(fields)
                if problem:
                    yield bad(loc, problem[0], problem[1], raw=text)
                    continue
                yield RawRow(loc, fields)
            if lr.read_error:
                yield bad("file", "truncated_file", f"the stream broke off ({lr.read_error})")
            elif n == 0:
                yield bad("file", "no_rows", "the file has no records")
