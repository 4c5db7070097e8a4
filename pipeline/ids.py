"""The one record-id formula (DESIGN.md: stable, deterministic, never PII in clear).

`record_id(source, key)` = first 16 hex digits of SHA-256 over `source \\x1f key`, UTF-8 with `surrogatepass` (a
source key read with surrogate escapes still gets an id, and the same one on every run). Ingest assigns it; the
later stages and the evaluation against ground truth recompute it from (source, key) with this function only.
"""

from __future__ import annotations

import hashlib

SEPARATOR = "\x1f"


def record_id(source: str, key: str) -> str:
    return hashlib.sha256(f"{source}{SEPARATOR}{key}".encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
