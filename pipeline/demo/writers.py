"""Streaming, deterministic writers for the five demo sources and the ground-truth files.

Each writer appends records in chunks (bounded memory at any n) into a temp path from `pipeline.io.atomic_path` /
`atomic_dir`; nothing appears under its final name unless the whole generation succeeds.
"""

from __future__ import annotations

import csv
import html
import io
import json
import sqlite3
from datetime import datetime
from email import base64mime, quoprimime
from email.headerregistry import Address
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

TX_COLUMNS = ["tx_id", "timestamp", "customer_id", "customer_name", "email", "phone", "card_number", "iban",
              "ip_address", "street_address", "postcode", "date_of_birth", "amount", "currency", "merchant_category",
              "merchant_id", "channel", "tx_type", "description", "is_fraud"]
TX_PII_COLUMNS = (("customer_name", "PERSON"), ("email", "EMAIL_ADDRESS"), ("phone", "PHONE_NUMBER"),
                  ("card_number", "CREDIT_CARD"), ("iban", "IBAN_CODE"), ("ip_address", "IP_ADDRESS"),
                  ("street_address", "STREET_ADDRESS"), ("date_of_birth", "DATE_OF_BIRTH"))

_FLUSH = 4096


class CsvSource:
    """transactions.csv: UTF-8, `,`, `"` quoting, `\\n` line ends; tracks the physical line of every record."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.buf = io.StringIO()
        self.w = csv.writer(self.buf, lineterminator="\n")
        self.w.writerow(TX_COLUMNS)
        self.line = 2  # next record starts here (header is line 1)
        self.pending = 0

    def add(self, row: list[str]) -> int:
        """Write a well-formed row; return its 1-based start line."""
        start = self.line
        self.w.writerow(row)
        self.line += 1 + row[18].count("\n")
        self.pending += 1
        if self.pending >= _FLUSH:
            self.flush()
        return start

    def add_raw(self, data: bytes) -> int:
        """Write a deliberately malformed physical line (bytes, ends with one `\\n`)."""
        self.flush()
        start = self.line
        self.fh.write(data)
        self.line += data.count(b"\n")
        return start

    def flush(self) -> None:
        if self.pending or self.buf.tell():
            self.fh.write(self.buf.getvalue().encode("utf-8"))
            self.buf.seek(0)
            self.buf.truncate()
            self.pending = 0

    def close(self) -> None:
        self.flush()
        self.fh.close()

    @staticmethod
    def render_row(row: list[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        return buf.getvalue()


class JsonlSource:
    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.parts: list[str] = []
        self.line = 1

    def add(self, obj: dict[str, Any]) -> int:
        return self.add_raw(json.dumps(obj, ensure_ascii=False))

    def add_raw(self, line: str) -> int:
        start = self.line
        self.parts.append(line)
        self.line += 1
        if len(self.parts) >= _FLUSH:
            self.flush()
        return start

    def flush(self) -> None:
        if self.parts:
            self.fh.write(("\n".join(self.parts) + "\n").encode("utf-8"))
            self.parts.clear()

    def close(self) -> None:
        self.flush()
        self.fh.close()


class EmlSource:
    """One .eml file per record; bodies plain (utf-8 / latin-1 / cp1252; 8bit, quoted-printable, base64),
    multipart/alternative or HTML-only. Rendered directly to RFC 5322 / MIME bytes (the `email` package's header
    registry is ~10x slower); boundaries and Message-IDs derive from the key, so the bytes are deterministic. The
    tests parse every file back with `email.message_from_bytes(..., policy=policy.default)`."""

    TO = "Fraud Reports <fraud-reports@examplebank.test>"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def from_header(name: str, email: str) -> tuple[str, int, int]:
        """The decoded From header value (as `str(msg["From"])` gives it) and the name's and address's offsets."""
        value = str(Address(display_name=name, addr_spec=email))
        return value, value.index(name), value.index("<" + email) + 1

    def headers(self, *, key: str, name: str, email: str, customer_id: str, subject: str, when: datetime,
                outcome: str) -> str:
        return (
            f"From: {formataddr((name, email), charset='utf-8')}\n"
            f"To: {self.TO}\n"
            f"Subject: {subject}\n"
            f"Date: {format_datetime(when)}\n"
            f"Message-ID: <{key.removesuffix('.eml')}@mail.examplebank.test>\n"
            f"X-Customer-ID: {customer_id}\n"
            f"X-Case-Outcome: {outcome}\n"
        )

    def build(self, *, key: str, name: str, email: str, customer_id: str, subject: str, when: datetime,
              outcome: str, body: str, layout: str, charset: str, cte: str | None) -> bytes:
        head = self.headers(key=key, name=name, email=email, customer_id=customer_id, subject=subject, when=when,
                            outcome=outcome) + "MIME-Version: 1.0\n"
        if layout == "plain":
            return head.encode("ascii") + _part("plain", body, charset, cte)
        html_body = "<html><body>" + "".join(
            f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in body.split("\n\n")
        ) + "</body></html>\n"
        if layout == "html":
            return head.encode("ascii") + _part("html", html_body, charset, cte)
        boundary = f"=_alt_{key.removesuffix('.eml')}"
        return (
            head.encode("ascii")
            + f'Content-Type: multipart/alternative; boundary="{boundary}"\n\n'.encode("ascii")
            + f"--{boundary}\n".encode("ascii") + _part("plain", body, charset, cte)
            + f"\n--{boundary}\n".encode("ascii") + _part("html", html_body, charset, cte)
            + f"\n--{boundary}--\n".encode("ascii")
        )

    def write(self, key: str, data: bytes) -> None:
        (self.folder / key).write_bytes(data)


def _part(subtype: str, text: str, charset: str, cte: str | None) -> bytes:
    """Content headers + encoded body of one text part (body lines end with `\\n`, as the parser returns them)."""
    raw = text.encode(charset)
    cte = cte or "8bit"
    if cte == "quoted-printable":
        payload = quoprimime.body_encode(raw.decode("latin-1"), maxlinelen=76).encode("ascii")
        if not payload.endswith(b"\n"):
            payload += b"\n"
    elif cte == "base64":
        payload = base64mime.body_encode(raw, maxlinelen=76).encode("ascii")
    else:
        payload = raw
    head = f'Content-Type: text/{subtype}; charset="{charset}"\nContent-Transfer-Encoding: {cte}\n\n'
    return head.encode("ascii") + payload


NOTES_DDL = (
    "CREATE TABLE case_notes (note_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, customer_id TEXT, analyst TEXT, "
    "created_at TEXT, note TEXT, outcome TEXT)"
)


class SqliteSource:
    """case_notes.sqlite written deterministically: fixed page size, no WAL, fixed insertion order and batch size."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.con = sqlite3.connect(path, isolation_level=None)
        self.con.execute("PRAGMA page_size=4096")
        self.con.execute("PRAGMA journal_mode=DELETE")
        self.con.execute("PRAGMA auto_vacuum=NONE")
        self.con.execute(NOTES_DDL)
        self.rows: list[tuple] = []

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.con.execute("BEGIN")
            self.con.executemany("INSERT INTO case_notes VALUES (?,?,?,?,?,?,?)", self.rows)
            self.con.execute("COMMIT")
            self.rows.clear()

    def close(self) -> None:
        self.flush()
        self.con.close()


ALERTS_SCHEMA = pa.schema([
    ("alert_id", pa.string()),
    ("customer_id", pa.string()),
    ("created_at", pa.timestamp("us", tz="UTC")),
    ("rule", pa.string()),
    ("reason", pa.string()),
    ("score", pa.float64()),
    ("confirmed", pa.bool_()),
])


class ParquetSource:
    def __init__(self, path: Path) -> None:
        self.writer = pq.ParquetWriter(path, ALERTS_SCHEMA, compression="zstd", write_statistics=True)
        self.cols: dict[str, list] = {f.name: [] for f in ALERTS_SCHEMA}
        self.row = 0

    def add(self, rec: dict[str, Any]) -> int:
        for k, v in rec.items():
            self.cols[k].append(v)
        self.row += 1
        if len(self.cols["alert_id"]) >= 8 * _FLUSH:
            self.flush()
        return self.row - 1

    def flush(self) -> None:
        if self.cols["alert_id"]:
            self.writer.write_table(pa.Table.from_pydict(self.cols, schema=ALERTS_SCHEMA))
            for v in self.cols.values():
                v.clear()

    def close(self) -> None:
        self.flush()
        self.writer.close()


class LinesOut:
    """A buffered text file (ground truth)."""

    def __init__(self, path: Path, header: list[str] | None = None) -> None:
        self.fh = open(path, "w", encoding="utf-8", newline="")
        self.csv = csv.writer(self.fh, lineterminator="\n") if header is not None else None
        if self.csv is not None:
            self.csv.writerow(header)
        self.parts: list[str] = []

    def row(self, values: list[Any]) -> None:
        assert self.csv is not None
        self.csv.writerow(values)

    def json(self, obj: dict[str, Any]) -> None:
        self.line(json.dumps(obj, ensure_ascii=False))

    def line(self, text: str) -> None:
        self.parts.append(text)
        if len(self.parts) >= 4 * _FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.fh.write("\n".join(self.parts) + "\n")
            self.parts.clear()

    def close(self) -> None:
        self.flush()
        self.fh.close()
