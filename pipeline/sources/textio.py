"""Line-oriented reading shared by the csv and jsonl readers.

Physical lines are split on `\\r\\n`, `\\n` and a lone `\\r` (mixed line endings are fine) from the *bytes*,
so a byte sequence that does not decode only spoils its own line, and line numbers stay the physical,
1-based numbers the ground truth and the quarantine use. Memory is bounded: input is read in blocks and one
over-long line is cut (and flagged) instead of being held whole.
"""

from __future__ import annotations

import codecs
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Optional

from pipeline.errors import ConfigError

BLOCK = 1 << 20
SNIFF = 1 << 13
_GZIP_MAGIC = b"\x1f\x8b"
# bytes that do not occur in text files (NUL and the C0 controls other than \t \n \v \f \r and ESC)
_BINARY = bytes(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + b"\x7f"
_DELETE_TEXT = bytes(range(256)).translate(None, _BINARY)


@dataclass(slots=True)
class Line:
    no: int  # 1-based physical line number
    text: str  # decoded, line ending kept
    problem: Optional[str] = None  # "bad_encoding" | "record_too_large"


def check_text_encoding(encoding: str, where: str) -> str:
    """Accept ASCII-compatible encodings only (lines are split on bytes); normalise the name."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise ConfigError(f"{where}: unknown encoding {encoding!r}") from None
    try:
        ok = "\n\r,;\t|\"'{}".encode(info.name) == b"\n\r,;\t|\"'{}"
    except UnicodeError:
        ok = False
    if not ok or info.name.startswith(("utf-16", "utf-32")):
        raise ConfigError(f"{where}: encoding {encoding!r} is not ASCII-compatible (use utf-8, latin-1, cp1252, ...)")
    return info.name


def open_binary(path: Path, compression: str) -> BinaryIO:
    """Open a source file for binary reading; `compression` is auto (gzip magic or .gz), gzip or none."""
    if compression == "gzip" or (compression == "auto" and (path.suffix == ".gz" or _has_gzip_magic(path))):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _has_gzip_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def looks_binary(sample: bytes) -> bool:
    """True for content that is clearly not text (many control bytes): refuse it as a whole."""
    if len(sample) < 16:
        return False
    n_binary = len(sample.translate(None, _DELETE_TEXT))  # what is left once the text bytes are deleted
    return n_binary >= 4 and n_binary / len(sample) > 0.05


class LineReader:
    """Iterate decoded physical lines of a (possibly gzip-compressed) text file.

    Attributes after iteration starts: `binary` (the first block looks binary), `bom` (a UTF-8 BOM was
    stripped), `read_error` (the stream broke off, e.g. a truncated gzip member).
    """

    def __init__(self, path: Path, encoding: str, compression: str, max_line_bytes: int) -> None:
        self.path = path
        self.encoding = encoding
        self.compression = compression
        self.max_line = max_line_bytes
        self.binary = False
        self.bom = False
        self.read_error: Optional[str] = None
        self._fh: Optional[BinaryIO] = None
        self._first = b""

    def __enter__(self) -> "LineReader":
        self._fh = open_binary(self.path, self.compression)
        try:
            self._first = self._fh.read(BLOCK)
        except (OSError, EOFError) as exc:
            self.read_error = type(exc).__name__
            self._first = b""
        if self._first.startswith(codecs.BOM_UTF8):
            self.bom = True
            self._first = self._first[len(codecs.BOM_UTF8):]
        self.binary = looks_binary(self._first[:SNIFF])
        return self

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            self._fh.close()

    @property
    def empty(self) -> bool:
        return not self._first and self.read_error is None

    def _blocks(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        assert self._fh is not None
        while True:
            try:
                data = self._fh.read(BLOCK)
            except (OSError, EOFError) as exc:  # corrupt / truncated compressed stream
                self.read_error = type(exc).__name__
                return
            if not data:
                return
            yield data

    def raw_lines(self) -> Iterator[tuple[bytes, bool]]:
        """(line bytes with ending, cut) pairs; an over-long line is cut at `max_line` and its rest skipped."""
        carry = b""
        skipping = False
        for data in self._blocks():
            buf = carry + data if carry else data
            parts = buf.splitlines(keepends=True)
            # the last piece may continue in the next block (no ending yet, or a \r whose \n may follow)
            carry = b"" if parts[-1].endswith(b"\n") else parts.pop()
            for part in parts:
                if skipping:
                    skipping = False
                    continue
                if len(part) > self.max_line:
                    yield part[: self.max_line], True
                else:
                    yield part, False
            if len(carry) > self.max_line:
                if not skipping:
                    yield carry[: self.max_line], True
                    skipping = True
                carry = b""
        if carry and not skipping:
            yield carry, False

    def __iter__(self) -> Iterator[Line]:
        enc = self.encoding
        no = 0
        for raw, cut in self.raw_lines():
            no += 1
            try:
                text = raw.decode(enc)
                problem = None
            except UnicodeDecodeError:
                text = raw.decode(enc, errors="replace")
                problem = "bad_encoding"
            if cut:
                problem = "record_too_large"
            yield Line(no, text, problem)
