"""Leakage gate: a second, stricter scan of the anonymized output, independent of the detector.

Three checks, over every string cell once the operator tokens (`TOKEN_RE`, exact shapes only) are cut out:

1. high-recall patterns validated by checksums or structure: payment cards (Luhn + known network, any grouping),
   IBAN (country length + mod-97), US SSN (formatted, valid area/group/serial), ABA routing (checksum; confident
   with a routing keyword nearby), e-mail addresses, phone numbers (`phonenumbers`, valid numbers only). Each
   finding has a confidence; those at or above `anonymize.gate.min_score` are residual PII, the rest are reported
   as suspects;
2. every original PII value seen in this batch (what the detector found plus the values of the PII columns),
   normalised per type and looked up with sets (`ValueMatcher`: word n-grams, digit windows, compact IBAN
   prefixes), in the columns the stage scanned;
3. the planted canaries, when a ground-truth folder is given (all string columns).

The same `ValueMatcher` also drives the stage's batch-wide sweep, so a value the detector found in one record is
replaced wherever else it appears; the gate then verifies that nothing of the dictionary survived.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional

from pipeline.anonymize.pseudonym import DIGIT_TYPES, TOKEN_RE, card_network, normalize
from pipeline.anonymize.validators import (
    IBAN_LENGTHS,
    aba_routing_valid,
    card_number_valid,
    digits_only,
    iban_valid,
    us_ssn_valid,
)

_WORD = re.compile(r"[^\W_]+")
_DIGIT_RUN = re.compile(r"\d(?:[ \t\-.()/]{0,3}\d)*")
_IBAN_RUN = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ \-]?[A-Za-z0-9]){8,34}")
# Single-word values of these types only match with the same capitalisation (a name is 'Will', not 'will').
_CASED_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION", "ORG", "GPE"})

MIN_DIGITS = 7
MIN_WORD_CHARS = 4
MAX_WORDS = 16


def segments(text: str) -> Iterator[tuple[int, str]]:
    """(offset, piece) of `text` between operator tokens; tokens never join their neighbours into a match."""
    pos = 0
    for m in TOKEN_RE.finditer(text):
        if m.start() > pos:
            yield pos, text[pos : m.start()]
        pos = m.end()
    if pos < len(text):
        yield pos, text[pos:]


def _nfkc(value: str) -> str:
    return unicodedata.normalize("NFKC", value)


_MONTHS = ("January February March April May June July August September October November December").split()


def _date_variants(value: str) -> list[str]:
    """Common spellings of an ISO date (dates of birth are written many ways in free text)."""
    from datetime import date

    try:
        d = date.fromisoformat(value.strip()[:10])
    except ValueError:
        return []
    y, m, dd, mon = d.year, d.month, d.day, _MONTHS[d.month - 1]
    return [
        f"{y}-{m:02d}-{dd:02d}", f"{m}/{dd}/{y}", f"{dd}/{m}/{y}", f"{dd}.{m}.{y}",
        f"{mon} {dd}, {y}", f"{dd} {mon} {y}", f"{mon[:3]} {dd}, {y}", f"{dd} {mon[:3]} {y}",
    ]


class ValueMatcher:
    """Set-based multi-value search: finds every occurrence of any added value in a text, in O(text) lookups.

    Values are normalised per type into one of three families: digits (cards, SSN, routing, account, phone numbers:
    any separators in the text), compact IBANs (spaces or dashes in the text), and word sequences (everything else:
    case-folded word n-grams, so whitespace and punctuation differences do not matter). Values too short to be
    distinctive (fewer than 7 digits, fewer than 4 letters) are not added (`add` returns False).
    """

    def __init__(self) -> None:
        self.digits: dict[str, str] = {}
        self.compact: dict[str, str] = {}
        self.words: dict[str, str] = {}  # "tok tok tok" (case-folded) -> type
        self.cased: dict[str, str] = {}  # single token, exact case -> type
        self._first: dict[str, set[int]] = {}
        self._digit_lens: list[int] = []
        self._compact_lens: list[int] = []
        self._dirty = False
        self._added: dict[tuple[str, str], bool] = {}  # add() is idempotent: a repeated value is not normalised again

    def __len__(self) -> int:
        return len(self.digits) + len(self.compact) + len(self.words) + len(self.cased)

    def add(self, entity_type: str, value: str) -> bool:
        """Add one value; False when it is too short to be distinctive (then it is not searched for)."""
        key = (entity_type, value)
        ok = self._added.get(key)
        if ok is None:
            ok = self._added[key] = self._add(entity_type, value)
        return ok

    def _add(self, entity_type: str, value: str) -> bool:
        if not value or not value.strip():
            return False
        if entity_type in DIGIT_TYPES or entity_type == "PHONE_NUMBER":
            ok = False
            d = digits_only(value)
            if entity_type == "PHONE_NUMBER":
                e164 = digits_only(normalize("PHONE_NUMBER", value))
                for cand in {d, e164, e164[1:] if e164.startswith("1") and len(e164) == 11 else ""}:
                    ok = self._add_digits(cand, entity_type) or ok
                return ok
            return self._add_digits(d, entity_type)
        if entity_type == "DATE_OF_BIRTH":
            variants = _date_variants(value)
            if variants:
                added = [self._add_words(entity_type, v) for v in variants]
                return any(added)
        if entity_type == "IBAN_CODE":
            v = normalize(entity_type, value)
            if len(v) >= 15:
                self.compact.setdefault(v, entity_type)
                self._dirty = True
                return True
            return False
        return self._add_words(entity_type, value)

    def _add_words(self, entity_type: str, value: str) -> bool:
        toks = _WORD.findall(_nfkc(value))
        if not toks or len(toks) > MAX_WORDS:
            return False
        if len(toks) == 1:
            tok = toks[0]
            if tok.isdigit():
                return self._add_digits(tok, entity_type)
            if len(tok) < MIN_WORD_CHARS:
                return False
            if entity_type in _CASED_TYPES:
                self.cased.setdefault(tok, entity_type)
                self._dirty = True
                return True
        elif sum(len(t) for t in toks) < MIN_WORD_CHARS:
            return False
        low = [t.casefold() for t in toks]
        key = " ".join(low)
        if key not in self.words:
            self.words[key] = entity_type
            self._first.setdefault(low[0], set()).add(len(low))
        return True

    def _add_digits(self, d: str, entity_type: str) -> bool:
        if len(d) < MIN_DIGITS or len(set(d)) == 1:
            return False
        self.digits.setdefault(d, entity_type)
        self._dirty = True
        return True

    def _freeze(self) -> None:
        self._digit_lens = sorted({len(k) for k in self.digits})
        self._compact_lens = sorted({len(k) for k in self.compact})
        self._dirty = False

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """Every (start, end, type) occurrence, possibly overlapping, in text order."""
        if self._dirty:
            self._freeze()
        out: list[tuple[int, int, str]] = []
        if self.words or self.cased:
            toks = list(_WORD.finditer(text))
            if toks:
                low = [m.group().casefold() for m in toks]
                n_tok = len(toks)
                for i, w in enumerate(low):
                    if self.cased:
                        t = self.cased.get(toks[i].group())
                        if t is not None:
                            out.append((toks[i].start(), toks[i].end(), t))
                    lens = self._first.get(w)
                    if lens:
                        for n in lens:
                            if i + n <= n_tok:
                                t = self.words.get(" ".join(low[i : i + n]))
                                if t is not None:
                                    out.append((toks[i].start(), toks[i + n - 1].end(), t))
        if self.digits:
            lens = self._digit_lens
            for m in _DIGIT_RUN.finditer(text):
                run = m.group()
                pos = [m.start() + j for j, ch in enumerate(run) if ch.isdigit()]
                ds = "".join(run[j - m.start()] for j in pos)
                nd = len(ds)
                for n in lens:
                    if n > nd:
                        break
                    for j in range(nd - n + 1):
                        t = self.digits.get(ds[j : j + n])
                        if t is not None:
                            s0 = pos[j]
                            if s0 > 0 and text[s0 - 1] == "+":  # keep the sign with the number
                                s0 -= 1
                            out.append((s0, pos[j + n - 1] + 1, t))
        if self.compact:
            for m in _IBAN_RUN.finditer(text):
                run = m.group()
                pos = [m.start() + j for j, ch in enumerate(run) if ch.isalnum()]
                cs = "".join(text[p] for p in pos).upper()
                for n in self._compact_lens:
                    if n > len(cs):
                        break
                    t = self.compact.get(cs[:n])
                    if t is not None:
                        out.append((pos[0], pos[n - 1] + 1, t))
        out.sort()
        return out


# ------------------------------------------------------------------------------------------------ patterns

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_DIGIT_GROUPS = re.compile(r"(?<![\d])\d+(?:[ \-]\d+)*(?![\d])")
# a card written with dots: only the full 4-4-4-4(-n) and 4-6-5 shapes (dotted amounts, dates and IPs stay out)
_DOTTED_CARD = re.compile(r"(?<![\d.])(?:\d{4}(?:\.\d{4}){3}(?:\.\d{1,3})?|\d{4}\.\d{6}\.\d{5})(?![\d]|\.\d)")
_SSN = re.compile(r"(?<![\d\-])(\d{3})[- ](\d{2})[- ](\d{4})(?![\d\-])")
_NINE = re.compile(r"(?<![\d])\d{9}(?![\d])")
_ABA_CONTEXT = re.compile(r"routing|\baba\b|\brtn\b|transit", re.I)
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?(?![\d.])")
_IBAN_CAND = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?:[ \-]?[A-Z0-9]){11,32}")


@dataclass(frozen=True)
class Finding:
    type: str
    check: str  # pattern | original_value | canary
    score: float
    start: int
    end: int


def _card_finding(digits: str, start: int, end: int) -> Finding:
    """A Luhn-valid card number: confident with a known network's prefix, a suspect otherwise."""
    return Finding("CREDIT_CARD", "pattern", 0.95 if card_network(digits) not in (None, "other") else 0.5, start, end)


def pattern_findings(text: str) -> list[Finding]:
    """High-recall, checksum-validated PII patterns in one piece of text (no operator tokens inside)."""
    out: list[Finding] = []
    if "@" in text:
        for m in _EMAIL.finditer(text):
            out.append(Finding("EMAIL_ADDRESS", "pattern", 0.95, m.start(), m.end()))
    n_digits = sum(map(str.isdigit, text))  # no generator frame per character
    if n_digits >= 9:
        for m in _DIGIT_GROUPS.finditer(text):
            groups = [(g.start(), g.group()) for g in re.finditer(r"\d+", m.group())]
            seen: set[tuple[int, int]] = set()
            for a in range(len(groups)):
                total = ""
                for b in range(a, len(groups)):
                    total += groups[b][1]
                    if len(total) > 19:
                        break
                    if len(total) >= 13 and card_number_valid(total):
                        s, e = m.start() + groups[a][0], m.start() + groups[b][0] + len(groups[b][1])
                        if (s, e) not in seen:
                            seen.add((s, e))
                            out.append(_card_finding(total, s, e))
        if "." in text:
            for m in _DOTTED_CARD.finditer(text):
                total = m.group().replace(".", "")
                if card_number_valid(total):
                    out.append(_card_finding(total, m.start(), m.end()))
        for m in _SSN.finditer(text):
            if us_ssn_valid(m.group()):
                out.append(Finding("US_SSN", "pattern", 0.85, m.start(), m.end()))
        for m in _NINE.finditer(text):
            if aba_routing_valid(m.group()):
                ctx = text[max(0, m.start() - 40) : m.start()]
                score = 0.9 if _ABA_CONTEXT.search(ctx) else 0.4
                out.append(Finding("ABA_ROUTING", "pattern", score, m.start(), m.end()))
    if n_digits >= 7:
        out.extend(_phone_findings(text))
    if n_digits >= 2:
        for m in _IBAN_CAND.finditer(text):
            comp = re.sub(r"[^A-Z0-9]", "", m.group())
            n = IBAN_LENGTHS.get(comp[:2])
            if n and len(comp) >= n and iban_valid(comp[:n]):
                # the finding ends at the IBAN's last character, not at the candidate's: "DE89…3000 Mark" is cut
                # before " M" (otherwise the next word's initial would join the value and its pseudonym)
                ends = [m.start() + j + 1 for j, ch in enumerate(m.group()) if ch.isalnum()]
                out.append(Finding("IBAN_CODE", "pattern", 1.0, m.start(), ends[n - 1]))
    return out


def _phone_findings(text: str) -> list[Finding]:
    import phonenumbers
    from phonenumbers import Leniency, PhoneNumberMatcher

    out = []
    text = _IPV4.sub(lambda m: " " * len(m.group()), text)  # addresses and networks are not phone numbers
    try:
        for m in PhoneNumberMatcher(text, "US", leniency=Leniency.VALID):
            raw = m.raw_string
            formatted = raw.startswith("+") or bool(re.search(r"[\s().\-]", raw))
            out.append(Finding("PHONE_NUMBER", "pattern", 0.85 if formatted else 0.6, m.start, m.end))
    except phonenumbers.NumberParseException:  # pragma: no cover - the matcher swallows these itself
        pass
    return out


# ---------------------------------------------------------------------------------------------------- gate

MAX_EXAMPLES = 20  # residual findings listed in gate.json (positions only)


@dataclass
class GateReport:
    min_score: float
    allowed_types: frozenset[str] = frozenset()
    residual: Counter = field(default_factory=Counter)
    suspects: Counter = field(default_factory=Counter)
    allowed: Counter = field(default_factory=Counter)
    by_check: Counter = field(default_factory=Counter)
    checked_records: int = 0
    checked_cells: int = 0
    records_with_residual: int = 0
    examples: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return sum(self.residual.values()) == 0

    def empty(self) -> "GateReport":
        """A report with the same settings and no counts (one partition's, to `merge` later)."""
        return GateReport(min_score=self.min_score, allowed_types=self.allowed_types)

    def merge(self, other: "GateReport", max_examples: int = MAX_EXAMPLES) -> None:
        """Add the counts of a report of later records (examples stay the first `max_examples` in record order)."""
        for mine, theirs in ((self.residual, other.residual), (self.suspects, other.suspects),
                             (self.allowed, other.allowed), (self.by_check, other.by_check)):
            mine.update(theirs)
        self.checked_records += other.checked_records
        self.checked_cells += other.checked_cells
        self.records_with_residual += other.records_with_residual
        self.examples.extend(other.examples[: max(0, max_examples - len(self.examples))])

    def to_dict(self) -> dict:
        return {
            "passed": self.passed,
            "residual": dict(sorted(self.residual.items())),
            "suspects": dict(sorted(self.suspects.items())),
            "allowed": dict(sorted(self.allowed.items())),
            "by_check": dict(sorted(self.by_check.items())),
            "checked_records": self.checked_records,
            "checked_cells": self.checked_cells,
            "records_with_residual": self.records_with_residual,
            "min_score": self.min_score,
            "examples": self.examples,
        }


class LeakageGate:
    """Scans anonymized records; accumulates a `GateReport`. Findings carry positions, never values."""

    MAX_EXAMPLES = MAX_EXAMPLES

    def __init__(
        self,
        min_score: float,
        originals: Optional[ValueMatcher] = None,
        canaries: Iterable[tuple[str, str]] = (),
        allowed_types: Iterable[str] = (),
    ) -> None:
        self.originals = originals or ValueMatcher()
        self.canary_matcher = ValueMatcher()
        self.canary_raw: list[str] = []
        n = 0
        for ctype, value in canaries:
            n += 1
            self.canary_matcher.add(ctype, value)
            v = _nfkc(value).casefold().strip()
            if len(v) >= MIN_WORD_CHARS:
                self.canary_raw.append(v)
        self.canaries_checked = n
        self.report = GateReport(min_score=min_score, allowed_types=frozenset(allowed_types))

    def scan_text(self, text: str, originals: bool) -> list[Finding]:
        found: list[Finding] = []
        for off, piece in segments(text):
            for f in pattern_findings(piece):
                found.append(Finding(f.type, f.check, f.score, f.start + off, f.end + off))
            if originals and len(self.originals):
                for s, e, t in self.originals.find(piece):
                    found.append(Finding(t, "original_value", 1.0, s + off, e + off))
            if self.canaries_checked:
                for s, e, t in self.canary_matcher.find(piece):
                    found.append(Finding(t, "canary", 1.0, s + off, e + off))
                if self.canary_raw:
                    low = _nfkc(piece).casefold()
                    for v in self.canary_raw:
                        if v in low:
                            found.append(Finding("CANARY", "canary", 1.0, off, off + len(piece)))
        return found

    def scan_record(self, record_id: str, cells: Iterable[tuple[str, str, bool]]) -> int:
        """cells: (field, text, check original values). Returns the number of residual findings."""
        rep = self.report
        rep.checked_records += 1
        n_res = 0
        for fld, text, originals in cells:
            rep.checked_cells += 1
            for f in self.scan_text(text, originals):
                if f.score < rep.min_score:
                    rep.suspects[f.type] += 1
                elif f.check == "pattern" and f.type in rep.allowed_types:
                    rep.allowed[f.type] += 1
                else:
                    rep.residual[f.type] += 1
                    rep.by_check[f.check] += 1
                    n_res += 1
                    if len(rep.examples) < MAX_EXAMPLES:
                        rep.examples.append(
                            {"record_id": record_id, "field": fld, "type": f.type, "check": f.check,
                             "start": f.start, "end": f.end}
                        )
        if n_res:
            rep.records_with_residual += 1
        return n_res
