"""Read the generated demo sources back with the standard parsers (csv, json, email, sqlite3, pyarrow).

Used by the tests and the benchmark to check the ground truth against the files; not a pipeline reader (ingest
has its own, driven by schemas/sources.yaml).
"""

from __future__ import annotations

import csv
import email
import html
import io
import json
import sqlite3
from email import policy
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

TX_COLS = 20
CHAT_REQUIRED = ("message_id", "conversation_id", "customer_id", "timestamp", "channel", "text", "label")
MAIN_TEXT = {"transactions": "description", "chats": "text", "emails": "body", "case_notes": "note", "alerts": "reason"}


def read_sources(raw: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(source, key) -> {field: value} for every record a standard parser accepts."""
    raw = Path(raw)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    text = (raw / "transactions.csv").read_bytes().decode("utf-8", errors="surrogateescape")
    rows = csv.reader(io.StringIO(text, newline=""))
    header = next(rows)
    for r in rows:
        if len(r) == TX_COLS and not any("\udc80" <= ch <= "\udcff" for v in r for ch in v):
            out[("transactions", r[0])] = dict(zip(header, r))
    for line in (raw / "chats.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if all(k in rec for k in CHAT_REQUIRED):
            out[("chats", rec["message_id"])] = rec
    for p in sorted((raw / "emails").glob("*.eml")):
        msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
        fields: dict[str, Any] = {"From": str(msg["From"]), "X-Case-Outcome": msg["X-Case-Outcome"],
                                  "customer_id": msg["X-Customer-ID"]}
        plain = msg.get_body(preferencelist=("plain",))
        html_part = msg.get_body(preferencelist=("html",))
        try:
            if plain is not None:
                payload = plain.get_payload(decode=True) or b""
                payload.decode(plain.get_content_charset() or "utf-8")  # strict: undecodable bodies are malformed
                fields["body"] = plain.get_content()
            if html_part is not None:
                fields["body_html"] = html.unescape(html_part.get_content())
        except (UnicodeError, LookupError):
            continue
        if "body" in fields or "body_html" in fields:
            out[("emails", p.name)] = fields
    con = sqlite3.connect(raw / "case_notes.sqlite")
    try:
        for rec in con.execute("SELECT note_id, case_id, customer_id, analyst, created_at, note, outcome FROM case_notes"):
            out[("case_notes", rec[0])] = dict(zip(("note_id", "case_id", "customer_id", "analyst", "created_at",
                                                     "note", "outcome"), rec))
    finally:
        con.close()
    for rec in pq.read_table(raw / "alerts.parquet").to_pylist():
        out[("alerts", rec["alert_id"])] = rec
    return out


def main_text(source: str, rec: dict[str, Any]) -> str:
    return rec.get(MAIN_TEXT[source]) or rec.get("body_html") or ""
