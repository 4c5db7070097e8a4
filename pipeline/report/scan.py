"""Defence in depth: the report is built from counts only, and its rendered files are still scanned for PII.

The scan reuses the leakage gate's checksum-validated patterns (`pipeline.anonymize.gate.pattern_findings`: cards
with Luhn, IBAN mod-97, SSN, ABA routing, e-mail, phone numbers) and falls back to Luhn / IBAN / e-mail regexes when
the anonymize package is not importable. Embedded images (`data:` URIs) are cut out first: they are rendered from
counts, and base64 is noise to a pattern scan; so are hex digests (masked when they hold a letter). Findings are reported as counts by type, never as values.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable

_DATA_URI = re.compile(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=\s]+")
# hashes, fingerprints and record ids: hex runs holding at least one letter (a card number in clear has none). The
# gate's digit patterns would otherwise see the decimal runs inside a SHA-256 as card-number candidates.
_HEX_ID = re.compile(r"(?<![0-9A-Za-z])(?=[0-9a-f]*[a-f])[0-9a-f]{12,128}(?![0-9A-Za-z])")
_EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![0-9A-Za-z])\d(?:[ -]?\d){12,18}(?![0-9A-Za-z])")
_IBAN = re.compile(r"(?<![0-9A-Za-z])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}(?![0-9A-Za-z])")


def _fallback(text: str) -> Counter:
    from pipeline.anonymize.validators import card_number_valid, iban_valid

    found: Counter = Counter()
    found["EMAIL_ADDRESS"] += len(_EMAIL.findall(text))
    found["CREDIT_CARD"] += sum(1 for m in _CARD.finditer(text) if card_number_valid(m.group()))
    found["IBAN_CODE"] += sum(1 for m in _IBAN.finditer(text) if iban_valid(m.group()))
    return +found


def _gate_scanner(min_score: float) -> Callable[[str], Counter]:
    try:
        from pipeline.anonymize.gate import pattern_findings
    except Exception:  # noqa: BLE001 - the gate module missing or broken: regex fallback
        return _fallback

    def scan(text: str) -> Counter:
        found: Counter = Counter()
        for line in text.splitlines():
            for f in pattern_findings(line):
                if f.score >= min_score:
                    found[f.type] += 1
        return found | _fallback(text)

    return scan


def scan_for_pii(texts: dict[str, str], min_score: float = 0.85) -> dict[str, dict[str, int]]:
    """{file name: {TYPE: n}} for every file with a finding (empty dict: clean)."""
    scan = _gate_scanner(min_score)
    out = {}
    for name, text in sorted(texts.items()):
        found = scan(_HEX_ID.sub("<hex>", _DATA_URI.sub("data:image/png;base64,", text)))
        if found:
            out[name] = dict(sorted(found.items()))
    return out
