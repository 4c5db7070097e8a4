"""Replacement of the anonymize stage (in the driver, or on forked local workers that inherit the dictionary and
keys): detected spans united with the batch dictionary of known values, operators applied once per distinct text,
column policies and signal columns per record."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Optional

from pipeline.anonymize.columns import ColumnAction, apply_column
from pipeline.anonymize.executors import SpanT
from pipeline.anonymize.gate import ValueMatcher
from pipeline.anonymize.pseudonym import SIGNALS, Replacer
from pipeline.errors import FraudSLMError

DICTIONARY_RECOGNIZER = "batch_dictionary"
NER_TYPES = frozenset({"PERSON", "LOCATION", "NRP", "ORGANIZATION"})
COLUMN_RECOGNIZER = "column_policy"


@dataclass
class _TextResult:
    new_text: Optional[str]
    entities: list[tuple[str, int, int, float, str, str]]  # type, start, end, score, operator, recognizer
    error: Optional[str] = None


def _scan_texts(rows: dict[str, list], plan: list[ColumnAction]) -> tuple[dict[str, int], dict[str, int]]:
    """Distinct texts of the scanned columns: (NER texts -> index, pattern-only texts -> index). Deterministic."""
    ner: dict[str, int] = {}
    pat: dict[str, int] = {}
    for a in plan:
        if a.action != "scan":
            continue
        target = ner if a.ner else pat
        for v in rows[a.name]:
            if v is None:
                continue
            s = v if isinstance(v, str) else str(v)
            if s and s not in target:
                target[s] = len(target)
    return ner, pat


def _merge(spans: list[SpanT]) -> list[SpanT]:
    """Union of overlapping spans (detector spans are disjoint; dictionary hits may overlap them). On the same
    characters the higher score names the type: a known value (dictionary, 1.0) over an NER guess ("Question from
    John Smith" tagged as a place keeps the customer's PERSON pseudonym)."""
    if not spans:
        return []
    spans = sorted(spans, key=lambda s: (s[1], -s[2], -s[3]))
    out = [spans[0]]
    for s in spans[1:]:
        t, a, b, sc, rec = out[-1]
        if s[1] < b:
            if s[2] > b:
                rec2 = rec if s[4] == rec else f"{rec}+{s[4]}"
                out[-1] = (t, a, s[2], max(sc, s[3]), rec2)
        else:
            out.append(s)
    return out


class _Anonymizer:
    """Replacement: operators per distinct text, column policies, signals."""

    def __init__(self, replacer: Replacer, dictionary: ValueMatcher, plan: list[ColumnAction]) -> None:
        self.replacer = replacer
        self.dictionary = dictionary
        self.plan = plan
        self.sweep_hits = 0

    def text(self, text: str, spans: Optional[list[SpanT]]) -> _TextResult:
        if spans is None:
            raise AssertionError("unreachable")
        extra = [(t, s, e, 1.0, DICTIONARY_RECOGNIZER) for s, e, t in self.dictionary.find(text)]
        if extra:
            covered = {(s[1], s[2]) for s in spans}
            self.sweep_hits += sum(1 for x in extra if (x[1], x[2]) not in covered)
            # a span kept by policy (e.g. a URL) never shields a known PII value inside it
            keep = self.replacer.keeps
            if keep and any(s[0] in keep for s in spans):
                spans = [s for s in spans if s[0] not in keep or not any(x[1] < s[2] and s[1] < x[2] for x in extra)]
        merged = _merge(list(spans) + extra)
        parts: list[str] = []
        ents = []
        pos = 0
        for t, s, e, score, rec in merged:
            repl, op = self.replacer.replace(t, text[s:e])
            parts.append(text[pos:s])
            parts.append(repl)
            pos = e
            ents.append((t, s, e, score, op, rec))
        parts.append(text[pos:])
        return _TextResult("".join(parts), ents)


class _Quarantine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _anonymize_record(rows, r, plan, text_result, replacer: Replacer):
    """(output row, entity rows, original structured PII values by type) for record r of a partition."""
    rec: dict[str, Any] = {}
    ents: list[tuple] = []
    originals: dict[str, list[str]] = defaultdict(list)
    token = replacer.pseudonymizer.token
    for a in plan:
        v = rows[a.name][r]
        if a.action == "scan":
            if v is None:
                rec[a.name] = None
                continue
            s = v if isinstance(v, str) else str(v)
            if not s:
                rec[a.name] = s
                continue
            tr = text_result(a.ner, s)
            if tr.error:
                raise _Quarantine(tr.error)
            rec[a.name] = tr.new_text
            for t, st, en, score, op, recog in tr.entities:
                ents.append((a.name, t, st, en, score, op, recog))
                originals[t].append(s[st:en])
            continue
        if a.action == "keep":
            rec[a.name] = v
            continue
        if v is not None and a.entity_type and a.holds_pii_values:
            sv = v if isinstance(v, str) else str(v)
            originals[a.entity_type].insert(0, sv)  # structured values win over text mentions
            if sv and a.name != "group_id":
                ents.append((a.name, a.entity_type, 0, len(sv), 1.0, a.action, COLUMN_RECOGNIZER))
        if a.action == "drop":
            continue
        rec[a.name] = apply_column(a, v, token)
    return rec, ents, originals


def _signals(originals: dict[str, list[str]]) -> dict[str, Optional[str]]:
    out: dict[str, Optional[str]] = {}
    for col, (typ, fn) in SIGNALS.items():
        val = None
        for v in originals.get(typ, ()):
            val = fn(v)
            if val is not None:
                break
        out[col] = val
    return out


def collect_structured(dictionary: ValueMatcher, plan: list[ColumnAction], rows: dict[str, list],
                       keep_types: set[str]) -> None:
    """Add the values of the PII columns (names, e-mails, cards, customer ids ...) to the batch dictionary."""
    for a in plan:
        if a.holds_pii_values and a.entity_type and a.entity_type not in keep_types:
            for v in rows[a.name]:
                if v is not None:
                    dictionary.add(a.entity_type, v if isinstance(v, str) else str(v))


# free-text types whose values come from the NER or a loose pattern: their sweep is checked for agreement
SWEPT_FREE_TEXT_TYPES = NER_TYPES | {"STREET_ADDRESS"}
# a free-text value is swept into every text only when the detector itself tagged it in at least this share of
# the distinct texts that contain it: a real name is tagged almost wherever it occurs, while a false positive
# ("card", "via online", "Alert VELOCITY") is tagged in a handful of the thousands of texts holding it, and
# sweeping it would erase that phrase from every record
SWEEP_MIN_AGREEMENT = 0.2


def _word_key(value: str) -> Optional[str]:
    from pipeline.anonymize.gate import _WORD, _nfkc

    toks = _WORD.findall(_nfkc(value))
    return " ".join(t.casefold() for t in toks) if toks else None


class SweepCandidates:
    """Free-text values (names, places, addresses) found by the detector, before they join the batch dictionary.

    `add` records in how many distinct texts the detector tagged each value, `count` in how many distinct texts it
    occurs at all, and `commit` adds to the dictionary the values tagged in at least SWEEP_MIN_AGREEMENT of
    them. One-word values are never swept ('Good', 'Payee', 'card' are too often wrong). Identifiers (checksummed
    or digit-based) bypass this and always join the dictionary."""

    def __init__(self) -> None:
        self.matcher = ValueMatcher()
        self.values: dict[str, tuple[str, str]] = {}  # key -> (type, first value seen)
        self.tagged: Counter = Counter()
        self.contains: Counter = Counter()
        self.withheld = 0

    def add_text(self, text: str, spans) -> None:
        keys = set()
        for typ, s, e in spans:
            v = text[s:e]
            if len(v.split()) < 2:
                continue
            k = _word_key(v)
            if k is None or not self.matcher.add(typ, v):
                continue
            self.values.setdefault(k, (typ, v))
            keys.add(k)
        self.tagged.update(keys)

    def count(self, texts) -> None:
        if not self.values:
            return
        for t in texts:
            hits = self.matcher.find(t)
            if hits:
                self.contains.update({_word_key(t[s:e]) for s, e, _ in hits})

    def commit(self, dictionary: ValueMatcher) -> None:
        for k, (typ, v) in self.values.items():
            if self.tagged[k] >= SWEEP_MIN_AGREEMENT * max(self.contains[k], self.tagged[k]):
                dictionary.add(typ, v)
            else:
                self.withheld += 1


def collect_detected(dictionary: ValueMatcher, texts_and_spans, keep_types: set[str],
                     candidates: "SweepCandidates") -> None:
    """Add every identifier the detector found ((texts, spans per text) pairs) to the batch dictionary; free-text
    values (names, places, addresses) go to `candidates`, which sweeps only those the detector agrees on."""
    for texts, spans in texts_and_spans:
        for t, ss in zip(texts, spans):
            free = []
            for typ, s, e, _, _ in ss or ():
                if typ in keep_types:
                    continue
                if typ in SWEPT_FREE_TEXT_TYPES:
                    free.append((typ, s, e))
                else:
                    dictionary.add(typ, t[s:e])
            if free:
                candidates.add_text(t, free)


class TextResults:
    """One partition's replaced texts, computed once per distinct (scan mode, text) from the worker's spans."""

    def __init__(self, anon: _Anonymizer, ner: dict[str, int], pat: dict[str, int], res) -> None:
        self.anon, self.ner, self.pat, self.res = anon, ner, pat, res
        self.cache: dict[tuple[bool, str], _TextResult] = {}

    def __call__(self, is_ner: bool, s: str) -> _TextResult:
        k = (is_ner, s)
        r = self.cache.get(k)
        if r is None:
            res = self.res
            idx = (self.ner if is_ner else self.pat)[s]
            spans = (res.ner_spans if is_ner else res.pattern_spans)[idx]
            err = (res.ner_errors if is_ner else res.pattern_errors).get(idx)
            if spans is None:
                r = _TextResult(None, [], err or "detect_failed")
            else:
                try:
                    r = self.anon.text(s, spans)
                except FraudSLMError:
                    raise
                except Exception as exc:  # noqa: BLE001 - fail closed, no message
                    r = _TextResult(None, [], f"anonymize_failed:{type(exc).__name__}")
            self.cache[k] = r
        return r


# public names
TextResult, Anonymizer, Quarantine, anonymize_record, signals, merge_spans, scan_texts = (
    _TextResult, _Anonymizer, _Quarantine, _anonymize_record, _signals, _merge, _scan_texts)
