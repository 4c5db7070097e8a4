"""`kind: eml` — a folder of `.eml` files (sorted by name) or an mbox file. Locator/key: the file name
(mbox: `message N`, 0-based).

Fields a config can name: every header, lower-cased with `-` as `_` (`subject`, `date`, `message_id`,
`x_customer_id`, `x_case_outcome`, ...; RFC 2047 encoded words decoded), `from_name`, `from_address`,
`to_address`, `body` (text/plain preferred, HTML reduced to text with BeautifulSoup; the part's charset
honoured, unknown charsets fall back to UTF-8 then cp1252) and `filename`.
"""

from __future__ import annotations

import email
import email.policy
import mailbox
from email.errors import HeaderParseError
from email.message import Message
from email.utils import parseaddr
import re
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal, Optional

from bs4 import BeautifulSoup
from pydantic import BaseModel, ConfigDict

from pipeline.sources.base import RawRow, Reader, bad, register

_BLANKS = re.compile(r"\n\s*\n\s*(?:\n\s*)+")
_SPACES = re.compile(r"[ \t\r\f\v\xa0]+")


class EmlOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pattern: str = "*.eml"  # files taken from a folder location
    format: Literal["auto", "eml", "mbox"] = "auto"  # a file location: auto = mbox unless it ends in .eml
    prefer: Literal["plain", "html"] = "plain"
    require_body: bool = True  # an e-mail without a body goes to quarantine (empty_body)


_BLOCK_TAGS = ["p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"]


def html_to_text(html: str) -> str:
    """Visible text of an HTML body: scripts/styles dropped, line breaks at <br> and block elements."""
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "head", "title"]):
        tag.decompose()
    for br in soup.find_all("br"):
        br.replace_with("\n")
    for tag in soup.find_all(_BLOCK_TAGS):
        tag.append("\n")
    return soup.get_text()


def _normalize_body(text: str) -> str:
    lines = [_SPACES.sub(" ", ln).strip() for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _part_text(part: Message) -> tuple[str, bool]:
    """(text, decodable): the part's payload decoded with its declared charset. A payload that is not valid in
    its declared charset is decoded with replacement characters and reported (bad_encoding); an unknown or
    missing charset falls back to UTF-8, then cp1252."""
    payload = part.get_payload(decode=True)
    if payload is None:
        return "", True
    if isinstance(payload, str):
        return payload, True
    charset = part.get_content_charset()
    if charset:
        try:
            return payload.decode(charset), True
        except LookupError:
            pass  # unknown charset name: fall back below
        except UnicodeDecodeError:
            return payload.decode(charset, errors="replace"), False
    for enc in ("utf-8", "cp1252"):
        try:
            return payload.decode(enc), True
        except UnicodeDecodeError:
            continue
    return payload.decode("utf-8", errors="replace"), False


def _unescape(s: str) -> str:
    """Raw 8-bit header bytes (kept as surrogates by the parser) decoded as UTF-8, else cp1252."""
    if not any("\udc80" <= c <= "\udcff" for c in s):
        return s
    b = s.encode("utf-8", errors="surrogateescape")
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("cp1252", errors="replace")


_POLICY = email.policy.default


def decode_header_value(raw: Any, name: str = "Subject") -> str:
    """A header value with RFC 2047 encoded words decoded (raw 8-bit bytes read as UTF-8, else cp1252)."""
    value = _unescape(str(raw))
    try:
        value = str(_POLICY.header_fetch_parse(name, value))
    except (HeaderParseError, LookupError, UnicodeError, ValueError, TypeError, IndexError, AttributeError):
        pass
    return " ".join(value.split())


def _address(raw: Any, name: str = "From") -> tuple[str, str]:
    """(display name, address) of the first address in an address header."""
    value = _unescape(str(raw))
    try:
        addrs = _POLICY.header_fetch_parse(name, value).addresses
        if addrs:
            return " ".join(str(addrs[0].display_name or "").split()), str(addrs[0].addr_spec or "")
    except (HeaderParseError, LookupError, UnicodeError, ValueError, TypeError, IndexError, AttributeError):
        pass
    disp, addr = parseaddr(" ".join(value.split()))
    return disp, addr


_DERIVED = {"from_name": "from", "from_address": "from", "to_address": "to"}


def parse_email(
    data: bytes, prefer: str = "plain", wanted: Optional[Iterable[str]] = None
) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """(fields, None) or (None, reason). `wanted`: the fields to produce (default: every header + derived).

    Parsed with the stdlib compat32 policy (fast); headers are decoded (RFC 2047) only when asked for."""
    msg = email.message_from_bytes(data, policy=email.policy.compat32)
    # raw header values (8-bit bytes kept as surrogates), first occurrence of a name wins
    headers = {k.strip().lower().replace("-", "_"): v for k, v in reversed(list(msg.raw_items()))}
    if not headers:
        return None, "not_an_email"
    names = set(headers) | set(_DERIVED) if wanted is None else set(wanted)
    fields: dict[str, Any] = {}
    for name in names:
        if name in _DERIVED:
            value = headers.get(_DERIVED[name])
            if value is not None:
                disp, addr = _address(value, _DERIVED[name])
                fields[name] = disp if name == "from_name" else addr
        elif name in headers:
            fields[name] = decode_header_value(headers[name], name.replace("_", "-"))
    found: dict[str, Message] = {}
    for part in msg.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype in ("text/plain", "text/html") and ctype not in found:
            found[ctype] = part
    order = ("text/plain", "text/html") if prefer == "plain" else ("text/html", "text/plain")
    body = ""
    for ctype in order:
        part = found.get(ctype)
        if part is None:
            continue
        text, decodable = _part_text(part)
        if not decodable:
            return None, "bad_encoding"
        if ctype == "text/html":
            text = html_to_text(text)
        body = _normalize_body(text)
        if body:
            break
    fields["body"] = body
    return fields, None


@register
class EmlReader(Reader):
    kind = "eml"
    Options = EmlOptions
    location = "file_or_dir"

    def rows(self) -> Iterator[RawRow]:
        o: EmlOptions = self.options  # type: ignore[assignment]
        loc = self.ctx.location
        assert loc is not None
        if loc.is_dir():
            yield from self._folder(loc, o)
        elif o.format == "eml" or (o.format == "auto" and loc.suffix.lower() == ".eml"):
            yield from self._one(loc.name, self._read(loc), o)
        else:
            yield from self._mbox(loc, o)

    def _max_bytes(self) -> int:
        return max(8 * self.ctx.max_field_bytes, 16 << 20)

    def _read(self, path: Path) -> bytes | RawRow:
        try:
            size = path.stat().st_size
            if size > self._max_bytes():
                return bad(path.name, "record_too_large", f"{size} bytes > {self._max_bytes()}")
            return path.read_bytes()
        except OSError as exc:
            return bad(path.name, "unreadable_file", type(exc).__name__)

    def _folder(self, folder: Path, o: EmlOptions) -> Iterator[RawRow]:
        root = folder.resolve()
        files = sorted(p for p in folder.glob(o.pattern) if not p.name.startswith("."))
        if not files:
            yield bad("folder", "no_rows", f"no files match {o.pattern!r}")
            return
        for path in files:
            real = path.resolve()
            if real != root and root not in real.parents:
                yield bad(path.name, "symlink_outside", "the file links outside the source folder (not read)")
                continue
            if not real.is_file():
                yield bad(path.name, "unreadable_file", "not a regular file")
                continue
            yield from self._one(path.name, self._read(path), o)

    def _mbox(self, path: Path, o: EmlOptions) -> Iterator[RawRow]:
        box = mailbox.mbox(path, create=False)
        try:
            n = 0
            for n, key in enumerate(box.iterkeys()):
                yield from self._one(f"message {n}", box.get_bytes(key), o)
            if not len(box):
                yield bad("file", "no_rows", "the mbox holds no messages")
        finally:
            box.close()

    def _one(self, name: str, data: bytes | RawRow, o: EmlOptions) -> Iterator[RawRow]:
        if isinstance(data, RawRow):
            yield data
            return
        if not data.strip():
            yield bad(name, "empty_file", "the file is empty")
            return
        fields, reason = parse_email(data, o.prefer, self.ctx.needed)
        if fields is None:
            detail = {"bad_encoding": "the body is not valid in its declared charset",
                      "malformed_header": "a header could not be parsed"}.get(reason or "", "no e-mail headers found")
            yield bad(name, reason or "not_an_email", detail, raw=data)
            return
        if o.require_body and not fields["body"]:
            yield bad(name, "empty_body", "the e-mail has no text body", raw=data)
            return
        fields["filename"] = name
        picked = {f: fields.get(f) for f in self.ctx.needed}
        problem = self.check_value_sizes(picked)
        if problem:
            yield bad(name, problem[0], problem[1], raw=data)
            return
        yield RawRow(name, picked, key=name)
