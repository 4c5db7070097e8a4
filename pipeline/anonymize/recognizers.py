"""Finance recognizers Presidio lacks or gets wrong.

Every recognizer is a Presidio `EntityRecognizer` subclass, so `schemas/recognizers.yaml` can list it by class name
(`type: predefined`) next to Presidio's own: a new recognizer is one class here plus one line there.

Most are `RegexRecognizer`s: compiled `regex` patterns (linear, no nested quantifiers over the same characters),
an optional checksum, an optional *required* context (a word such as "acct" within a window of characters before the
match, checked on the raw lower-cased text so no lemmatizer is needed), and a cheap trigger (a text without a digit
is never scanned for card numbers). Their scores are final: they are marked as already context-enhanced, so
Presidio's lemma enhancer does not boost them twice.
"""

from __future__ import annotations

import re as _stdre
from typing import ClassVar, Iterable, Optional, Sequence

import regex as re

from pipeline.anonymize.offline import import_presidio

import_presidio()  # before any Presidio import: skips its unused transformers engine (seconds per process)
from presidio_analyzer import EntityRecognizer, RecognizerResult  # noqa: E402
from presidio_analyzer.predefined_recognizers import PhoneRecognizer  # noqa: E402

from pipeline.anonymize import validators as v
from pipeline.anonymize.pseudonym import FREE_MAIL_DOMAINS

_META_NAME = RecognizerResult.RECOGNIZER_NAME_KEY
_META_ID = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY
_META_CTX = RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY

# Building blocks (Unicode-aware: names and places are not ASCII-only).
# Anna, O'Neil, Jean-Luc, Maria-Theresia, Hans-H., Šárka (at least one lower-case letter: "ABA" is not a name)
NAME_WORD = r"\p{Lu}(?:['’]\p{Lu})?[\p{Ll}\p{Lo}]*\p{Ll}(?:[\-'’]\p{Lu}?[\p{Ll}\p{Lo}]*\p{Ll})*(?:-\p{Lu}\.)?"
MAX_NAME_CHARS = 80  # longest tagged name PersonMentionRecognizer searches for again
NAME_INITIAL = r"\p{Lu}\.?(?=[ \t]+\p{Lu})"
SURNAME_PARTICLES = ("van", "von", "der", "den", "de", "del", "della", "di", "da", "dos", "das", "du", "le", "la", "bin",
                     "ibn", "al", "el", "ter", "ten", "y")
NAME_PARTICLE = "(?:" + "|".join(SURNAME_PARTICLES) + ")"
NAME_SUFFIX = r"(?:[ \t]+(?:Jr|Sr|II|III|IV)\b\.?)?"  # Koch II, Smith Jr.
# a particle is part of a name when a capitalised word follows, after at most one more particle ("van der Berg")
_PARTICLE_IN_NAME = rf"{NAME_PARTICLE}(?=(?:[ \t]+{NAME_PARTICLE})?[ \t]+\p{{Lu}})"
# secondary-unit words: a name never ends in one ("Mrs. Jane Roe Suite 541": the unit starts the address)
UNIT_WORDS = ("Apt", "Apartment", "Suite", "Ste", "Flat", "Unit")
_NOT_UNIT = r"(?!(?:" + "|".join(UNIT_WORDS) + r")\b)"
PERSON_NAME = (
    rf"{NAME_WORD}(?:[ \t]+(?:{NAME_INITIAL}|{_PARTICLE_IN_NAME}|{_NOT_UNIT}{NAME_WORD})){{0,3}}{NAME_SUFFIX}"
)
# two or more name words: used after cues that also precede non-names ("customer Service")
PERSON_NAME2 = (
    rf"{NAME_WORD}(?:[ \t]+(?:{NAME_INITIAL}|{_PARTICLE_IN_NAME}|{_NOT_UNIT}{NAME_WORD})){{1,3}}{NAME_SUFFIX}"
)

# Capitalised words that follow a cue but are not names ("I'm Sorry", "This is Urgent").
NOT_NAMES = frozenset(
    """a an the i me my we our you your he she it they this that these those there here not no yes ok okay sorry
    please thanks thank hello hi hey dear sir madam team customer client support bank fraud card account
    just so very really still also now today tomorrow yesterday calling writing looking trying going getting
    happy glad sure afraid unable able concerned worried confused interested available ready from at in on
    with for to of and or but urgent regarding re fw fwd subject monday tuesday wednesday thursday friday
    saturday sunday january february march april may june july august september october november december
    customer service manager analyst agent officer department bot user assistant system advisor operator
    summary details detail information info team services report notes note case alert alerts transaction
    transactions payment payments statement update request dispute security subject order invoice reference
    total balance amount date time new old best kind warm many yours sincerely regards cheers thanks
    savings checking wallet online store shop market supermarket restaurant cafe hotel airline insurance
    good morning evening afternoon night day email e-mail phone mobile address iban swift refunds refund parcel
    delivery notifications notification noreply no-reply billing help info admin verification verify alerts
    gift salary rent payroll payee payer merchant sender recipient beneficiary fraud unit
    could would can will shall should might must may do does did is are was were be have has had let kindly
    why what when where who whom whose how which someone somebody anyone anybody everyone nobody none
    whats wats""".split()
)
_MEMO_NOT_SURNAMES = NOT_NAMES | frozenset("friend friends family pub shop loan loans car cars house home mortgage "
                                          "isa pot vault".split())
_CONTRACTION = re.compile(r"['’](?:m|s|re|ve|ll|d|t)$", re.IGNORECASE)


class RegexRecognizer(EntityRecognizer):
    """Base class: patterns with a named group `pii` (or the whole match), validation and required context.

    Class attributes define the defaults; YAML may override `context` (the words) and `context_window`.
    """

    ENTITY: ClassVar[str] = ""
    # (name, pattern, score, score_with_context); score None = context required.
    PATTERNS: ClassVar[Sequence[tuple[str, str, Optional[float], float]]] = ()
    CONTEXT: ClassVar[Sequence[str]] = ()
    CONTEXT_WINDOW: ClassVar[int] = 40  # characters before the match
    CONTEXT_AFTER: ClassVar[int] = 0  # characters after the match
    TRIGGER: ClassVar[Optional[str]] = r"\d"  # a text without this is skipped
    FLAGS: ClassVar[int] = re.MULTILINE

    def __init__(
        self,
        supported_language: str = "en",
        supported_entity: Optional[str] = None,
        context: Optional[list[str]] = None,
        context_window: Optional[int] = None,
        name: Optional[str] = None,
        **kwargs,
    ) -> None:
        self._words = list(context) if context else list(self.CONTEXT)
        self.context_window = context_window if context_window is not None else self.CONTEXT_WINDOW
        super().__init__(
            supported_entities=[supported_entity or self.ENTITY],
            supported_language=supported_language,
            name=name,
            context=None,  # scores are final; keep Presidio's lemma enhancer off these results
        )

    def load(self) -> None:
        self._compiled = [(n, re.compile(p, self.FLAGS), s, sc) for n, p, s, sc in self.PATTERNS]
        self._trigger = re.compile(self.TRIGGER) if self.TRIGGER else None
        words = getattr(self, "_words", None) or list(self.CONTEXT)
        if words:
            alt = "|".join(re.escape(w.lower()) for w in sorted(words, key=len, reverse=True))
            self._ctx = re.compile(rf"(?<![a-z0-9])(?:{alt})")
        else:
            self._ctx = None

    # -- hooks ---------------------------------------------------------------------------------------------
    def validate(self, value: str, match) -> bool:  # noqa: ARG002 - match available to subclasses
        return True

    def has_context(self, text: str, start: int, end: int) -> bool:
        if self._ctx is None:
            return False
        lo = max(0, start - self.context_window)
        if self._ctx.search(text[lo:start].lower()):
            return True
        if self.CONTEXT_AFTER:
            return bool(self._ctx.search(text[end : end + self.CONTEXT_AFTER].lower()))
        return False

    # -- Presidio API --------------------------------------------------------------------------------------
    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        if self._trigger is not None and not self._trigger.search(text):
            return []
        results: list[RecognizerResult] = []
        seen: set[tuple[int, int]] = set()
        for name, rx, score, score_ctx in self._compiled:
            for m in rx.finditer(text):
                try:
                    start, end = m.span("pii")
                except IndexError:
                    start, end = m.span()
                if start < 0 or end <= start or (start, end) in seen:
                    continue
                value = text[start:end]
                if not self.validate(value, m):
                    continue
                final = score_ctx if self.has_context(text, start, end) else score
                if final is None or final <= 0:
                    continue
                seen.add((start, end))
                results.append(self._result(entity, start, end, final, name))
        return results

    def _result(self, entity: str, start: int, end: int, score: float, pattern: str) -> RecognizerResult:
        return RecognizerResult(
            entity_type=entity,
            start=start,
            end=end,
            score=score,
            analysis_explanation=None,
            recognition_metadata={_META_NAME: self.name, _META_ID: self.id, _META_CTX: True, "pattern": pattern},
        )


# ------------------------------------------------------------------------------------------------ cards
class CardNumberRecognizer(RegexRecognizer):
    """Payment card numbers in every common grouping, Luhn-validated, with a plausible issuer prefix.

    4-4-4-4(-3) and 4-6-5 (Amex) with spaces, dashes or dots, 4-6-4 (Diners), compact 13-19 digits, any other grouping
    of 13-19 digits with one separator (lower score); 12-digit Maestro numbers only with card context.
    """

    ENTITY = "CREDIT_CARD"
    _B = r"(?<![\w\-.,/])"
    _E = r"(?![\w\-]|[.,/]\d)"
    PATTERNS = (
        ("grouped 4-4-4-4", _B + r"(?P<pii>[2-6]\d{3}([ \-.])\d{4}\2\d{4}\2\d{4}(?:\2\d{1,3})?)" + _E, 0.9, 1.0),
        ("amex 4-6-5", _B + r"(?P<pii>3[47]\d{2}([ \-.])\d{6}\2\d{5})" + _E, 0.9, 1.0),
        ("diners 4-6-4", _B + r"(?P<pii>3[0689]\d{2}([ \-])\d{6}\2\d{4})" + _E, 0.85, 1.0),
        ("compact 13-19", _B + r"(?P<pii>[2-6]\d{12,18})" + _E, 0.6, 0.95),
        # any other grouping (e.g. 3-5-4-4, 6-6-4): the leakage gate catches these anyway, so missing them here
        # would fail the whole run closed (tests/test_properties.py::test_no_planted_value_survives)
        ("irregular grouping", _B + r"(?P<pii>[2-6]\d{1,6}([ \-])\d{2,7}(?:\2\d{1,7}){1,4})" + _E, 0.5, 0.9),
        ("compact 12", _B + r"(?P<pii>[56]\d{11})" + _E, None, 0.8),
        ("jcb legacy 15", _B + r"(?P<pii>(?:1800|2131)\d{11})" + _E, 0.6, 0.95),
        # any other issuer prefix, Luhn-valid, only next to a card word ("my card 1800...", "card no 7...")
        ("compact 13-19 with card context", _B + r"(?P<pii>[0-9]\d{12,18})" + _E, None, 0.8),
    )
    CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "maestro", "discover", "pan", "cc", "jcb")
    CONTEXT_WINDOW = 40

    def validate(self, value: str, match) -> bool:
        return v.card_number_valid(value)


# ------------------------------------------------------------------------------------------------- IBAN
class IbanFinanceRecognizer(RegexRecognizer):
    """IBANs compact or grouped (spaces/dashes, any case), cut at the country's length and mod-97 validated.

    The candidate is scanned character by character so a grouped IBAN followed by more words or digits is cut at
    exactly the registered length instead of failing validation.
    """

    ENTITY = "IBAN_CODE"
    TRIGGER = r"[A-Za-z]{2}\d{2}"
    FLAGS = re.IGNORECASE | re.MULTILINE
    _START = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2})(\d{2})(?=[ \-]?[A-Za-z0-9])")
    CONTEXT = ("iban", "bank", "account", "transfer", "sepa", "wire", "beneficiary")

    def load(self) -> None:
        super().load()

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        if not self._trigger.search(text):
            return []
        out: list[RecognizerResult] = []
        n = len(text)
        for m in self._START.finditer(text):
            country = m.group(1).upper()
            length = v.IBAN_LENGTHS.get(country)
            if length is None:
                continue
            start = m.start()
            i, got, last_end = m.end(), 4, m.end()
            sep_run = 0
            while i < n and got < length:
                ch = text[i]
                if ch.isascii() and ch.isalnum():
                    got += 1
                    sep_run = 0
                    last_end = i + 1
                elif ch in " -" and sep_run == 0:
                    sep_run = 1
                else:
                    break
                i += 1
            if got != length:
                continue
            if last_end < n and text[last_end].isascii() and text[last_end].isalnum():
                continue  # runs on: not this IBAN
            value = text[start:last_end]
            if not v.iban_valid(value):
                continue
            compact = " " not in value and "-" not in value
            score = 1.0 if compact or self.has_context(text, start, last_end) else 0.95
            out.append(self._result(entity, start, last_end, score, "iban scan"))
        return out


# ------------------------------------------------------------------------------------------------- SWIFT
class SwiftBicRecognizer(RegexRecognizer):
    """SWIFT/BIC codes (8 or 11 characters, ISO country in positions 5-6); context required."""

    ENTITY = "SWIFT_CODE"
    TRIGGER = r"[A-Z]{6}"
    FLAGS = re.MULTILINE  # case-sensitive: BICs are upper case
    PATTERNS = (("bic", r"(?<![A-Za-z0-9])(?P<pii>[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}(?:[A-Z0-9]{3})?)(?![A-Za-z0-9])", None, 0.85),)
    CONTEXT = ("swift", "bic", "bank identifier", "bank code", "sort code", "routing")
    CONTEXT_WINDOW = 30

    def validate(self, value: str, match) -> bool:
        return v.swift_valid(value)


# --------------------------------------------------------------------------------------------------- ABA
class AbaRoutingFinanceRecognizer(RegexRecognizer):
    """ABA routing numbers (9 digits, checksum); context lifts them over the threshold."""

    ENTITY = "ABA_ROUTING"
    PATTERNS = (
        ("aba", r"(?<![\w\-.])(?P<pii>\d{9})(?![\w\-]|[.,]\d)", 0.3, 0.9),
        ("aba dashed", r"(?<![\w\-.])(?P<pii>\d{4}-\d{4}-\d)(?![\w\-]|[.,]\d)", 0.3, 0.9),
    )
    CONTEXT = ("routing", "aba", "rtn", "transit", "routing number", "rt#", "r/t", "wire")
    CONTEXT_WINDOW = 40

    def validate(self, value: str, match) -> bool:
        return v.aba_routing_valid(value)


# ------------------------------------------------------------------------------------------------ SSN
class UsSsnFinanceRecognizer(RegexRecognizer):
    """US SSN: ###-##-#### / ### ## #### (structure-validated); compact 9 digits only with context."""

    ENTITY = "US_SSN"
    PATTERNS = (
        ("ssn dashed", r"(?<![\w\-.])(?P<pii>\d{3}([\- ])\d{2}\2\d{4})(?![\w\-]|[.,]\d)", 0.6, 0.95),
        ("ssn compact", r"(?<![\w\-.])(?P<pii>\d{9})(?![\w\-]|[.,]\d)", None, 0.85),
    )
    CONTEXT = ("ssn", "social security", "social sec", "ss#", "ss #", "ss no", "taxpayer", "tin")
    CONTEXT_WINDOW = 40

    def validate(self, value: str, match) -> bool:
        return v.us_ssn_valid(value)


# ------------------------------------------------------------------------------------------ bank account
class BankAccountRecognizer(RegexRecognizer):
    """Bank account numbers: 6-17 digits (optionally grouped) after "account", "acct", "a/c"."""

    ENTITY = "US_BANK_NUMBER"
    PATTERNS = (
        ("account", r"(?<![\w\-.=/?&#])(?P<pii>\d{6,17})(?![\w\-]|[.,]\d)", None, 0.75),
        ("account grouped", r"(?<![\w\-.])(?P<pii>\d{2,6}(?:[ \-]\d{2,8}){1,3})(?![\w\-]|[.,]\d)", None, 0.65),
        ("account masked", r"(?<![\w\-.])(?P<pii>[xX*•]{2,12}[ \-]?\d{4})(?![\w\-])", None, 0.6),
    )
    CONTEXT = ("account", "acct", "acc no", "acc. no", "acc#", "a/c", "checking", "savings", "bank no", "account no")
    CONTEXT_WINDOW = 30

    def validate(self, value: str, match) -> bool:
        digits = v.digits_only(value)
        if "x" in value.lower() or "*" in value or "•" in value:
            return True
        return 6 <= len(digits) <= 17 and len(set(digits)) > 1


# ------------------------------------------------------------------------------------------ ID documents
class IdDocumentRecognizer(RegexRecognizer):
    """Identity document numbers (driving licence, passport, national identity card, national insurance or tax
    number) after an explicit cue: a token of capitals and digits with at least 5 digits ("F162823540116",
    "AB1234567", "MORGA657054SM9IJ", "2270-66-1551", "QQ123456C")."""

    ENTITY = "ID_DOCUMENT"
    PATTERNS = (
        ("id document", r"(?<![\w\-./])(?P<pii>[A-Z]{0,6}\d[A-Z\d]*(?:-[A-Z\d]+){0,3})(?![\w\-]|[.,/]\d)", None, 0.85),
    )
    CONTEXT = ("driver's licen", "driver’s licen", "drivers licen", "driver licen", "driving licen", "licence no",
               "license no", "licence number", "license number", "licence #", "license #", "licence:", "license:",
               "dl no", "dl#", "dl number", "passport", "id card", "identity card", "identity document",
               "national id", "id document",
               # national identification and tax numbers ("NI number QQ123456C", "PESEL 85031212345")
               "national insurance", "ni number", "ni no", "nino", "social insurance", "tax id", "taxpayer id",
               "tax identification", "codice fiscale", "pesel", "personnummer", "aadhaar", "steuer-id", "steuerid",
               "steuernummer", "identifikationsnummer",
               # short national-ID acronyms, as whole words ("DNI 12345678Z", "NIE X1234567L", "BSN 123456782")
               *(f"{w}{end}" for w in ("dni", "nie", "nif", "bsn", "cpf", "sin") for end in (" ", ":", "#", "-")))
    CONTEXT_WINDOW = 40
    TRIGGER = (r"(?i:licen[cs]e|passport|id card|identity|national id|id document|\bdl\b|national insurance|"
               r"\bni n|\bnino\b|social insurance|tax id|taxpayer|tax identification|codice fiscale|pesel|"
               r"personnummer|aadhaar|steuer|identifikationsnummer|\b(?:dni|nie|nif|bsn|cpf|sin)\b)")  # no cue, no scan

    def has_context(self, text: str, start: int, end: int) -> bool:
        """The nearest cue before the value, with no other number between them: in "passport AB1234567, call
        1-182-049-6669" the phone number is not a passport number."""
        window = text[max(0, start - self.context_window):start].lower()
        last = None
        for last in self._ctx.finditer(window):
            pass
        return last is not None and not any(ch.isdigit() for ch in window[last.end():])

    def validate(self, value: str, match) -> bool:
        digits = v.digits_only(value)
        if not (5 <= len(digits) <= 20) or len(value) > 24 or len(set(digits)) < 2:
            return False
        return not re.fullmatch(r"(?:19|20)\d{2}-\d{1,2}-\d{1,2}|\d{1,2}-\d{1,2}-(?:19|20)\d{2}", value)


# ---------------------------------------------------------------------------------------- expiry / CVV
class CardExpiryRecognizer(RegexRecognizer):
    """Card expiry MM/YY or MM/YYYY after "exp", "expiry", "valid thru"."""

    ENTITY = "CARD_EXPIRY"
    PATTERNS = (
        ("expiry", r"(?<![\w/\-.])(?P<pii>(?:0?[1-9]|1[0-2])[ \t]?[/\-][ \t]?(?:\d{2}|20\d{2}))(?![\w/\-]|[.,]\d)", None, 0.85),
    )
    CONTEXT = ("exp", "expiry", "expires", "expiration", "valid thru", "valid through", "good thru", "valid until", "mm/yy")
    CONTEXT_WINDOW = 25

    def validate(self, value: str, match) -> bool:
        return v.expiry_valid(value)


class CvvRecognizer(RegexRecognizer):
    """CVV/CVC: 3-4 digits right after "cvv", "cvc", "security code"."""

    ENTITY = "CVV"
    PATTERNS = (("cvv", r"(?<![\w\-.,/=?&#])(?P<pii>\d{3,4})(?![\w\-/]|[.,]\d)", None, 0.85),)
    CONTEXT = ("cvv", "cvc", "cvv2", "cvc2", "cid", "csc", "security code", "card verification", "verification code")
    CONTEXT_WINDOW = 35


# ------------------------------------------------------------------------------------------------ phones
_PHONE_EXT = r"[ \t]?(?:x|ext\.?)[ \t]?\d{1,6}"  # an extension ("...-2413x762", "... ext. 12"): not the number's digits
_PHONE_EXT_END = re.compile(_PHONE_EXT + "$")


class PhoneFinanceRecognizer(PhoneRecognizer):
    """Phone numbers validated by libphonenumber for a list of regions (Presidio's PhoneRecognizer, faster).

    Presidio runs `PhoneNumberMatcher` over the whole text once per region; here a cheap regex first picks
    number-shaped candidates (7-15 digits with the usual separators) and only those are parsed and validated
    (`phonenumbers.is_valid_number`) for each region, which finds the same numbers at a fraction of the cost.
    Candidates that have the shape of an SSN (###-##-####), a bare run of 9 or fewer digits without a leading 0
    or +, or an ISO date are left to the SSN / routing / account / date recognizers.
    """

    DEFAULT_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN")
    SCORE = 0.5
    CONTEXT = ["phone", "telephone", "tel", "cell", "mobile", "call", "fax", "contact", "whatsapp", "sms", "text",
               "reach", "office", "landline"]
    _CANDIDATE = re.compile(
        r"(?<![\w+\-./])(?:\+|00)?\(?\d(?:[\d \t().\-/]|\u00a0){5,22}\d(?:" + _PHONE_EXT + r")?(?![\w:]|-\d|[.,/]\d)")
    _DATE_INSIDE = re.compile(r"(?:19|20)\d{2}[\-/.]\d{1,2}[\-/.]\d{1,2}|\d{1,2}[\-/.]\d{1,2}[\-/.](?:19|20)\d{2}")
    _NOT_PHONE = re.compile(r"\d{3}-\d{2}-\d{4}|[1-9]\d{0,8}|(?:19|20)\d{2}[\-./]\d{1,2}[\-./]\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}")

    def __init__(self, supported_language: str = "en", supported_regions: Optional[Iterable[str]] = None,
                 leniency: int = 1, context: Optional[list[str]] = None, name: Optional[str] = None, **kwargs) -> None:
        super().__init__(
            context=context or list(self.CONTEXT),
            supported_language=supported_language,
            supported_regions=tuple(supported_regions or self.DEFAULT_REGIONS),
            leniency=leniency,
            name=name,
        )

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        import phonenumbers

        if entities and self.supported_entities[0] not in entities:
            return []
        results: list[RecognizerResult] = []
        for m in self._CANDIDATE.finditer(text):
            cand = m.group().strip()
            body = _PHONE_EXT_END.sub("", cand)
            ndig = sum(ch.isdigit() for ch in body)
            if not (7 <= ndig <= 15) or len(body) - ndig > 6 or self._NOT_PHONE.fullmatch(cand) \
                    or self._DATE_INSIDE.search(cand):
                continue  # too few/many digits, too many separators (no phone has 7 groups), a date
            start = m.start() + (len(m.group()) - len(m.group().lstrip()))
            for region in self.supported_regions:
                try:
                    num = phonenumbers.parse(cand, region)
                except phonenumbers.NumberParseException:
                    continue
                if phonenumbers.is_valid_number(num):
                    region_found = phonenumbers.region_code_for_number(num) or region
                    results.append(RecognizerResult(
                        entity_type=self.supported_entities[0], start=start, end=start + len(cand), score=self.SCORE,
                        analysis_explanation=self._get_analysis_explanation(region_found),
                        recognition_metadata={_META_NAME: self.name, _META_ID: self.id}))
                    break
        return results


class PhonePatternRecognizer(RegexRecognizer):
    """Phone numbers phonenumbers misses: +CC international formats, and number-shaped strings after a phone cue."""

    ENTITY = "PHONE_NUMBER"
    _B = r"(?<![\w+\-./])"
    _E = r"(?![\w/]|-\d|[.,]\d)"  # "07700 063 966-Fax": a hyphen before a word ends the number
    _X = "(?:" + _PHONE_EXT + ")?"
    # groups after a +CC / 00CC prefix may be long ("+358 99 8897608", "+371 57679601"): national significant
    # numbers that libphonenumber does not know as valid (new ranges, made-up test numbers) are still phone numbers
    PATTERNS = (
        ("intl compact E.164", _B + r"(?P<pii>\+[1-9]\d{7,14}" + _X + ")" + _E, 0.7, 0.9),
        ("intl +CC", _B + r"(?P<pii>\+\d{1,3}(?:[ \-.]?\(0?\d{1,4}\))?[ \-.]?\d{1,12}(?:[ \-.]\d{1,12}){0,5}" + _X + ")"
         + _E, 0.7, 0.9),
        ("00CC", _B + r"(?P<pii>00[1-9]\d{0,2}(?:[ \-.]?\(0?\d{1,4}\))?[ \-.]\d{1,12}(?:[ \-.]\d{1,12}){1,5}" + _X + ")"
         + _E, None, 0.8),
        # the country code in parentheses: "+(370) 51928629", "(+358) 799020212"
        ("intl (+CC)", r"(?<![\w+\-./])(?P<pii>(?:\+\(\d{1,3}\)|\(\+\d{1,3}\))[ \-.]?\d{1,12}(?:[ \-.]\d{1,12}){0,5}" + _X + ")"
         + _E, 0.7, 0.9),
        # the North American shape with separators, also where libphonenumber rejects the area code (test and
        # made-up numbers: "1-153-022-5733x75296", "(201) 555-0148")
        ("NANP shape", _B + r"(?P<pii>(?:\+?1[ \-.])?(?:\(\d{3}\)[ \-.]?|\d{3}[\-.])\d{3}[\-.]\d{4}" + _X + ")" + _E, 0.6, 0.85),
        ("cued national",
         _B + r"(?P<pii>(?:1[ \-.])?\(?\d{2,5}\)?(?:[ \-./]?\d{2,5}){1,4})" + _E, None, 0.65),
        # the number inside a click-to-chat link ("https://wa.me/447700900123"): the link stays (URL policy), the
        # number in it is replaced
        ("chat link", r"(?i:(?<=\bwa\.me/|\bapi\.whatsapp\.com/send/?\?phone=|\bwhatsapp://send/?\?phone=|\bviber://chat\?number=))"
         r"(?P<pii>(?:\+|%2B)?\d{7,15})(?!\d)", 0.9, 0.9),
    )
    CONTEXT = ("phone", "tel", "telephone", "mobile", "mob:", "mob.", "mob ", "mob#", "cell", "call", "fax",
               "contact number", "whatsapp", "sms", "text me", "reach me", "office", "landline", "number is",
               "phone no", "ph", "my number", "new number", "number changed", "ring me", "tlf", "handy ", "handy:")
    CONTEXT_WINDOW = 25
    CONTEXT_AFTER = 10

    def validate(self, value: str, match) -> bool:
        digits = v.digits_only(_PHONE_EXT_END.sub("", value))
        if not (7 <= len(digits) <= 15):
            return False
        if re.fullmatch(r"(?:19|20)\d{2}[\-./]\d{1,2}[\-./]\d{1,2}|\d{1,2}[\-./]\d{1,2}[\-./](?:19|20)?\d{2}",
                        value.strip()):
            return False  # a date
        return len(set(digits)) > 2


# ------------------------------------------------------------------------------------------- addresses
_STREET_SUFFIX = (
    "Street|St|Str|Avenue|Ave|Av|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Way|Court|Ct|Place|Pl|Terrace|Ter|Terr|Close|"
    "Square|Sq|Crescent|Cres|Highway|Hwy|Parkway|Pkwy|Pky|Circle|Cir|Trail|Trl|Row|Walk|Gardens|Gdns|Grove|Gr|Hill|"
    "Hills|Park|Loop|Path|Pike|Alley|Aly|Plaza|Plz|Mews|Ridge|Rdg|View|Vw|Cliff|Cliffs|Bridge|Brg|Mall|Point|Pt|"
    "Points|Run|Village|Vlg|Villages|Meadow|Meadows|Mdws|Spring|Springs|Port|Ports|Knoll|Knolls|Heights|Hts|Falls|"
    "Summit|Harbor|Harbour|Harbors|Island|Islands|Junction|Jct|Landing|Shore|Shores|Station|Sta|Stravenue|Track|"
    "Turnpike|Tpke|Valley|Vly|Valleys|Vista|Extension|Ext|Estate|Estates|Expressway|Expy|Field|Fields|Flat|Flats|"
    "Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Fwy|Garden|Gateway|Glen|Glens|Green|Greens|Haven|Hollow|"
    "Inlet|Isle|Key|Keys|Lake|Lakes|Light|Lights|Lock|Locks|Lodge|Manor|Manors|Mill|Mills|Mission|Motorway|Mount|"
    "Mountain|Mountains|Mtn|Neck|Orchard|Oval|Overpass|Pass|Passage|Pine|Pines|Plain|Plains|Prairie|Radial|Ramp|Ranch|"
    "Rapid|Rapids|Rest|Route|Rte|Shoal|Shoals|Skyway|Spur|Spurs|Stream|Streets|Throughway|Trace|Trafficway|Tunnel|"
    "Underpass|Union|Unions|Viaduct|Ville|Wall|Wells|Well|Wharf|Quay|Parade|Rise|Approach|Broadway|Causeway|Chase|"
    "Common|Commons|Corner|Corners|Cove|Coves|Creek|Crossing|Crossroad|Crest|Curve|Dale|Dam|Divide|Esplanade|Gate|"
    "Gardens|Grounds|Groves|Hwy|Promenade|Reach|Retreat|Strand|Vale|Wynd|Yard|Camp|Canyon|Cape|Club|Courts|Center|"
    "Centre|Centers|Burg|Burgs|Bypass|Byp|Causeway|Cswy|Drives|Ways|Walks|Squares|Parks|Loaf|Mews|Gate|Branch|Brook|"
    "Brooks|Circles|Course|Extensions|Fall|Ferry|Land|River|Roads|Rue|Views|Via|Rows|Passage|Junctions|Ridges"
)
# English words that end like a German "-ring" street (Kaiserring, Ostring, Hansaring): gerunds and a few nouns
_ENGLISH_RING = r"(?i:(?:\p{L}*[eiou]|sp|st|b|\p{L}*(?:fe|cu|ti|ba|ta|ca|pu|lu)r)ring\b)"
_EU_COMPOUND = (
    "strasse|straße|str\\.|gasse|weg|platz|allee|ring|damm|ufer|chaussee|steig|pfad|"
    "vej|gade|allé|stræde|torv|"
    "katu|kuja|tie|polku|kaari|rinne|"
    "väg|vägen|gatan|gata|gränd|stigen|"
    "veien|vegen|gaten|gata|"
    "laan|straat|plein|gracht|kade|dijk|singel|dreef|steeg|"
    "utca|út|tér|körút|ulica|ul\\.|cesta|iela|gatvė"
)
_PREFIX_TYPE = (
    "Via|Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Rue|Avenue|Boulevard|Bd|Chemin|Allée|Impasse|Quai|Place|Route|"
    "Calle|Carrer|Avenida|Avda|Paseo|Plaza|Camino|Carretera|Rua|Travessa|Praça|Estrada|ul|ulica|Aleja|Al|Ulitsa|"
    "Str|Strada|Bulevardul|Calea|Sokak|Cadde|Caddesi|Pasaje|Psje|Pasadizo|Callejón|Glorieta|Rambla|Ronda|Alameda|"
    "Cañada|Urbanización|Calzada|Privada|Cerrada|Andador|Travesía|Avinguda|Passeig|Plaça|Aleea|Intrarea|Șoseaua|"
    "Soseaua|Drumul|Jalan|Jln|Jl|Lorong|Ladeira|Rodovia"
)
# street types that are not English words: matched in any case ("12 rue de la Paix", "Avenue Foch")
_PREFIX_TYPE_CI = ("rue|avenue|boulevard|chemin|allée|impasse|quai|calle|carrer|avenida|avda|paseo|rua|travessa|viale|piazza|"
                   "piazzale|corso|strada|ulica|aleja|aleea|pasaje|pasadizo|callejón|glorieta|travesía|avinguda|passeig|jalan")
_STREET_ABBREV = frozenset(
    "st ave av rd dr ln blvd ct pl ter terr sq cres hwy pkwy pky cir trl aly plz jct mtn rte tpke expy fwy byp cswy str "
    "sta vly vlg hts gdns gr pt brg rdg mdws ext u ul bd".split())
_WORD = r"(?:\p{Lu}[\p{L}'’.\-]*|\d{1,4}(?:st|nd|rd|th)?)"
_SEP = r"[ \t]*(?:,[ \t]*)?(?:\r?\n[ \t]*)?"
_CITY = r"\p{Lu}[\p{L}'’\-]*(?:[ \t]+(?:\p{Lu}[\p{L}'’\-]*|de|del|la|le|sur|am|an|upon|on)){0,3}"
_HOUSE_NO = r"(?:H\.[ \t]?No|House[ \t]+No|No|Nr)\.?[ \t]*"  # "H.No. 04, Karan Road", "No. 12 Church Street"
_UNIT = r"(?:(?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|Room|Rm|Bldg|Building|Block|Blk|Dept)\.?[ \t]*#?[ \t]*[\w\-]{1,6}|#[ \t]?\d{1,5}[A-Za-z]?)"
_US_STATE_ZIP = r"[A-Z]{2}[ \t]+\d{5}(?:-\d{4})?"
# "flat 4b, " / "Apt. 12, " before a number-first street
_UNIT_PREFIX = r"(?i:flat|apt|apartment|unit|suite|ste)\.?[ \t]*#?[ \t]*\d{1,4}[A-Za-z]?,[ \t]*"
# where a free-form address chunk ends: a sentence end, a line end, or a clause word
_ADDRESS_TAIL_END = (r"(?=[ \t]*(?:[?!;\n\"“”]|\.[\"”']?(?:[ \t]|$)|,[ \t]+and\b|[ \t]+(?:and|or|but|after|before|for|on|"
                     r"by|until|tomorrow|today|tonight|since|because|which|where|when)\b|$))")
_UK_POSTCODE = r"[A-Z]{1,2}\d[A-Z\d]?[ \t]*\d[A-Z]{2}"
# postcodes after a street: "75008", "D-80331", "AZ1000", "LV-1010", "123 45", "1012 AB", "00-950", and the
# six- and seven-digit codes of India, Colombia, Russia or Chile ("400001", "7675820")
_EU_POSTCODE = r"(?:[A-Z]{1,2}-?)?\d{4,5}|\d{3}[ \t]\d{2}|\d{4}[ \t]?[A-Z]{2}|\d{2}-\d{3}|\d{6,7}"


# prefix street types that make a street with a name and no number ("Rue de la Paix", "calle Mayor")
_BARE_PREFIX_TYPE = "rue|avenue|boulevard|chemin|allée|impasse|quai|viale|piazza|corso|calle|avenida|paseo|rua"

# Central European street types written after the name, as separate words
_CE_STREET_TYPE = "utca|útja|út|körút|tér|ulica|cesta|ulice|třída|námestie|nábrežie"

# street types unambiguous enough that "Name <type> <number>" is an address ("Nerger Ave. 34b"); the longer
# _STREET_SUFFIX list also holds words such as Park, Point, Club or Union that would make that pattern too eager
_STREET_TYPE_NUMBERED = ("Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Boulevard|Blvd|Drive|Dr|Court|Ct|Place|Pl|Terrace|Crescent|"
                         "Cres|Close|Square|Sq|Highway|Hwy|Parkway|Pkwy|Mews|Grove|Gardens|Row")
# Spanish and Portuguese street types written before the name or number, for the number-mark pattern below
_MARKED_STREET_TYPE = ("calle|cl|cll|clle|carrera|cra|kr|kra|avenida|av|avda|diagonal|diag|dg|transversal|transv|tv|"
                       "circular|cq|bulevar|boulevard|blv|blvd|pasaje|psje|camino|ruta|autopista|carretera|rua|travessa|"
                       "alameda|calzada|paseo|callejón|prolongación|prol|privada|cerrada|andador|jirón|estrada|rodovia|"
                       "praça|largo|avenue|rue|via|viale|corso|piazza")
# a house-number mark ("N° 128", "Nº 936", "nro. 12", "No. 5", "# 4-6")
_NUMBER_MARK = r"(?:[Nn]\.?[°º]|[Nn](?:ro|RO|úm|ÚM|um|UM)\.?|No\.|NO\.|no\.|#)"
_JUNCTION_CUE = r"(?i:(?:junction|corner|intersection|crossroads?|crossing)[ \t]+of)"  # "... of X and Y"
# one street of a junction ("the corner of 5th Ave and Main St", "junction of Orchard St. and Al-Harbi Square")
_XWORD = r"[\p{Lu}\d][\p{L}\d'’\-]*"
_STREET_WORD_LC = r"(?:u\.|utca|út|tér|körút|gate|gata|vej|gade|straat|weg|laan|tie|katu|kuja|rue|via|de|del|della|di|da|des|du|la|le|les|dos|das|do|van|von|der|den|al|el|ul\.|st\.)"
_XSTREET = rf"(?:{_XWORD}|{_STREET_WORD_LC})(?:[ \t]+(?:{_XWORD}|{_STREET_WORD_LC})){{0,4}}\.?"
_NAMEISH = rf"(?:\p{{Lu}}[\p{{L}}'’\-]*\.?|{_STREET_WORD_LC})"


class StreetAddressRecognizer(EntityRecognizer):
    """Street addresses.

    A street core (number + name + suffix; European "Name-strasse 12" / "Name 12" after a house number;
    prefix-type "Rue/Via/Calle ... 12"; PO and military boxes; or a number-first chunk after a cue such as
    "lives at", "located at", "send it to", "address:") is extended over what follows on the same line (unit,
    city, state + ZIP, postcode, country) and over following short lines that look like address lines (unit,
    city, "Country 12345", ", ST 12345"), as in letter and e-mail signature blocks.
    """

    ENTITY = "STREET_ADDRESS"

    _CORES = (
        ("number street suffix", 0.85,
         rf"(?<![\w\-])(?:(?:Flat|Studio|Apartment|Apt|Unit|Suite|Room)\.?[ \t]+[\w\-]{{1,5}},?[ \t]+|{_HOUSE_NO})?\d{{1,6}}[A-Za-z]?(?:-\d{{1,4}})?,?(?:[ \t]+(?:{_WORD}|[NSEW]\.?)){{1,4}}[ \t]+(?:{_STREET_SUFFIX})\b\.?"),
        ("unit street suffix", 0.85,
         rf"(?<![\w\-])(?:Flat|Studio|Apartment|Apt|Unit|Suite|Room)\.?[ \t]+\d{{1,5}}[A-Za-z]?,?(?:[ \t]+{_WORD}){{1,4}}[ \t]+(?:{_STREET_SUFFIX})\b\.?"),
        # (not an English "-ring" word before a number: "Transferring 500 EUR", "During 1971", "Spring 2024")
        ("compound street number", 0.7,
         rf"(?<![\w\-])(?!{_ENGLISH_RING})\p{{Lu}}[\p{{L}}\-]*(?i:{_EU_COMPOUND})(?:[ \t]+\p{{Lu}}[\p{{L}}\-]*)?[ \t]+\d{{1,5}}[A-Za-z]?(?:[/\-]\d{{1,4}})?\b"),
        ("street-type word number", 0.7,
         rf"(?<![\w\-])(?:\p{{Lu}}[\p{{L}}\-]*[ \t]+)(?:Straße|Strasse|Str\.|Weg|Gasse|Platz|Allee|Vej|Gade|Laan|Straat|Väg|Gatan|Utca|Út|u\.|utca|út|tér|gate|vej|gade)[ \t]+\d{{1,5}}[A-Za-z]?\b\.?"),
        # Central European street types after a name of one or two words, in any case ("Kossuth Lajos utca 12",
        # "Árpád fejedelem útja 3.", "Celovška cesta 5", "PUHARJEVA ULICA 8C")
        ("name street-type number", 0.7,
         rf"(?<![\w\-])\p{{Lu}}[\p{{L}}\-]*(?:[ \t]+\p{{L}}[\p{{L}}\-]*)?[ \t]+(?i:{_CE_STREET_TYPE})[ \t]+\d{{1,5}}[A-Za-z]?\b\.?(?![/.\-:,]\d)"),
        # a secondary unit on its own ("Mrs. Jane Roe Suite 541 ..."): a part of an address wherever it stands
        ("unit number", 0.6,
         r"(?<![\w\-])(?:Apt|APT|apt|Apartment|APARTMENT|Suite|SUITE|Flat|Ste)\.?[ \t]*#?[ \t]*\d{1,5}[A-Za-z]?\b(?![.,:/\-]\d|[ \t]*%)"),
        ("house number, name, number", 0.65,
         rf"(?<![\w\-.,/:])\d{{1,6}}[ \t]+\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*\.?(?:[ \t]+{_NAMEISH}){{0,3}}[ \t]+\d{{1,5}}[A-Za-z]?\b\.?(?=[ \t]*(?:,|\r?\n|$|(?:Apt|Suite|Unit|Flat|Ste)\b))"),
        ("prefix street number", 0.7,
         rf"(?<![\w\-])(?:\d{{1,5}}[A-Za-z]?,?[ \t]+)?(?:{_PREFIX_TYPE}|(?i:{_PREFIX_TYPE_CI}))\.?[ \t]+(?:(?:de|del|della|di|da|des|du|la|le|les|dos|das|do|d'|l')[ \t]*)*\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*(?:[ \t]+(?:\p{{Lu}}[\p{{L}}'’\-]*|de|del|la|le|di|da)){{0,3}},?[ \t]*\d{{1,5}}[A-Za-z]?(?:/\d{{1,4}}[A-Za-z]?)?\b(?![/.\-:]\d)"),
        ("number, prefix street", 0.7,
         rf"(?<![\w\-])\d{{1,5}}[A-Za-z]?,?[ \t]+(?:{_PREFIX_TYPE}|(?i:{_PREFIX_TYPE_CI}))\.?[ \t]+(?:(?:de|del|della|di|da|des|du|la|le|les|dos|das|do|d'|l')[ \t]*)*\p{{Lu}}[\p{{L}}'’\-]*(?:[ \t]+(?:\p{{Lu}}[\p{{L}}'’\-]*|de|del|la|le|di|da)){{0,3}}"),
        ("prefix street", 0.6,
         rf"(?<![\w\-])(?i:{_BARE_PREFIX_TYPE})[ \t]+(?:(?:de|del|della|di|da|des|du|la|le|les|dos|das|do)[ \t]+|d'|l')*\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*(?:[ \t]+\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*){{0,2}}"),
        ("street suffix number", 0.9,  # above a name model's reading of "Nerger Ave" as a person
         rf"(?<![\w\-])\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*(?:[ \t]+\p{{Lu}}\p{{Ll}}[\p{{L}}'’\-]*){{0,2}}[ \t]+(?:{_STREET_TYPE_NUMBERED})\.?[ \t]+\d{{1,5}}[A-Za-z]?\b(?![/.\-:,]\d)"),
        # a street type, up to five words or numbers in any case, a house-number mark and the number, as written
        # in Spanish- and Portuguese-speaking countries: "Calle Tierra del Fuego N° 128", "AV. 1 N° 458",
        # "Rua Augusta nº 1500", Colombian plates "Cl. 6W # 4-6 Este", "transversal 76 # 1-3"
        ("street type, number mark", 0.9,  # above a name model's reading of "Calle Tierra del Fuego" as a person
         rf"(?<![\w\-])(?i:{_MARKED_STREET_TYPE})\.?(?:[ \t]+[\p{{L}}\d][\p{{L}}\d'’\-]*[ªº°]?\.?){{1,5}}[ \t]*{_NUMBER_MARK}[ \t]*\d{{1,5}}[A-Za-z]?(?:[ \t]?-[ \t]?\d{{1,4}}[A-Za-z]?)?\b(?:[ \t]+(?i:este|oeste|sur|norte|bis)\b)?(?:,?[ \t]+(?i:dpto|depto|dto|piso|of|oficina|int|interior|apto|casa|torre|local)\.?[ \t]*[\w\-]{{1,6}}\b)?"),
        # the same in capitals, as in bank-statement text: "ROLANDO PÉREZ ST. 744"
        ("capitals street suffix number", 0.9,
         rf"(?<![\w\-])(?!(?:AT|TO|ON|IN|OF|THE|FROM|AND|OR|IS|WAS|FILE|ADDRESS|ADDR|NEW|OLD)\b)\p{{Lu}}[\p{{Lu}}'’\-]+(?:[ \t]+\p{{Lu}}[\p{{Lu}}'’\-]+){{0,2}}[ \t]+(?:{_STREET_TYPE_NUMBERED.upper()})\.?[ \t]+\d{{1,5}}[A-Za-z]?\b(?![/.\-:,]\d)"),
        ("cross streets", 0.65,
         rf"\b{_JUNCTION_CUE}[ \t]+(?P<pii>{_XSTREET}[ \t]+(?i:and|&)[ \t]+{_XSTREET})"),
        ("cross streets at", 0.65,
         rf"(?<![\w\-])\p{{Lu}}[\p{{L}}'’\-]*(?:[ \t]+\p{{Lu}}[\p{{L}}'’\-]*){{0,2}}[ \t]+(?:{_STREET_SUFFIX})\b\.?[ \t]+(?:at|and|&)[ \t]+\p{{Lu}}[\p{{L}}'’\-]*(?:[ \t]+\p{{Lu}}[\p{{L}}'’\-]*){{0,2}}[ \t]+(?:{_STREET_SUFFIX})\b\.?"),
        ("po box", 0.75,
         r"(?<![\w\-])(?i:P\.?[ \t]?O\.?[ \t]?Box|Post[ \t]+Office[ \t]+Box|Postfach)[ \t]+\d{1,6}\b"),
        ("military", 0.8,  # in any case: "uscgc aslakhanov\nfpo ae 44941"
         r"(?<![\w\-])(?i:(?:PSC|Unit|USNS|USNV|USS|USCGC|CMR)[ \t]+[\w \t]{1,30}?(?:,[ \t]*Box[ \t]+\d{1,5})?" + _SEP + r"(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5})\b"),
        ("cued number-first", 0.6,
         r"(?i:\b(?:lives?|living|resides?|residing|located|situated|based|moved|meet(?:[ \t]+(?:you|me))?|see you|deliver(?:ed)?|send|sent|ship(?:ped)?|mail(?:ed)?|post(?:ed)?|addresse?s?|is|are|registered)\b[^.\n?!]{0,30}?(?:\b(?:at|to|in|is|are)\b|:)[ \t]*(?:\r?\n[ \t]*)?)"
         r"(?P<pii>(?:" + _UNIT_PREFIX + r")?\d{1,6}[A-Za-z]?,?[ \t]+\p{L}[^\n?!;:]{2,60}?)" + _ADDRESS_TAIL_END),
        # a secondary unit, a number-first street and a town after a comma, in any case
        # ("flat 4b, 19 kingsway, cardiff cf10 3ds"; not "flat 5, 20 off everything")
        ("unit, number-first", 0.6,
         r"(?<![\w\-])(?P<pii>" + _UNIT_PREFIX + r"\d{1,6}[A-Za-z]?[ \t]+\p{L}[\p{L}'’\-]*(?:[ \t]+\p{L}[\p{L}'’\-]*){0,2},"
         r"[ \t]*\p{L}[\p{L}'’\-]*(?:[ \t]+\p{L}[\p{L}'’\-]*)?(?:[ \t]+(?:[A-Za-z]{1,2}\d[A-Za-z\d]?[ \t]*\d[A-Za-z]{2}|\d{4,6}))?)"
         r"(?=[ \t]*(?:[,.;!?)\n]|$))"),
    )
    _CONTINUATIONS = (
        _UNIT,
        rf"at[ \t]+\p{{Lu}}[\p{{L}}'’\-]*(?:[ \t]+\p{{Lu}}[\p{{L}}'’\-]*){{0,2}}[ \t]+(?:{_STREET_TYPE_NUMBERED})\b\.?",  # "... at Oak Ave"
        rf"{_CITY},?[ \t]+{_US_STATE_ZIP}",
        rf"{_CITY},?[ \t]+{_UK_POSTCODE}",
        rf"(?:{_EU_POSTCODE})[ \t]+{_CITY}",
        rf"{_CITY},?[ \t]+(?:{_EU_POSTCODE})\b",
        _US_STATE_ZIP,
        _UK_POSTCODE,
        r"\p{Lu}[\p{Lu}'’\-]+(?:[ \t]+\p{Lu}[\p{Lu}'’\-]+){0,3}(?=[ \t]*(?:\r?\n|,|$))",  # CITY in capitals
    )
    # a following line that looks like part of an address block (unit / city / "Country 12345" / ", ST 12345")
    _LINE = re.compile(
        r"[ \t>]*(?:"
        + _UNIT + r"(?:[ \t]+" + _UNIT + r")?"
        + r"|,?[ \t]*(?:" + _CITY + r")?,?[ \t]*(?:[A-Z]{2,3}|\d{1,3})?[ \t]*(?:" + _EU_POSTCODE + r"|\d{5}(?:-\d{4})?|" + _UK_POSTCODE + r")"
        + r"|,?[ \t]*[A-Z]{2,3}"
        + r"|" + _CITY
        + r")[ \t]*,?[ \t]*$"
    )

    def __init__(self, supported_language: str = "en", supported_entity: Optional[str] = None,
                 name: Optional[str] = None, **kwargs) -> None:
        super().__init__(supported_entities=[supported_entity or self.ENTITY],
                         supported_language=supported_language, name=name, context=None)

    def load(self) -> None:
        self._cores = [(n, s, re.compile(p, re.MULTILINE)) for n, s, p in self._CORES]
        self._cont = re.compile(_SEP + r"(?:" + "|".join(f"(?:{c})" for c in self._CONTINUATIONS) + r")(?![\w])", re.MULTILINE)
        # the cores that need no digit: cross streets ("Fidelis Freeway at Falcon Pl", "corner of ...") and a
        # prefix-type street ("Rue de la Paix", "calle Mayor"); every other core holds a number. (Checked only in
        # texts without a digit; the street type is checked behind a cheap " at|and|& Capital" match.)
        self._trigger = re.compile(r"\d")
        self._trigger_no_digit = re.compile(
            rf"{_JUNCTION_CUE}\b|(?<=\b(?:{_STREET_SUFFIX})\.?)[ \t]+(?:at|and|&)[ \t]+\p{{Lu}}"
            rf"|(?i:\b(?:{_BARE_PREFIX_TYPE})[ \t])")

    def _extend(self, text: str, end: int) -> int:
        # same line (and the immediately following one, via _SEP): unit, city, state/ZIP, postcode
        for _ in range(6):
            m = self._cont.match(text, end)
            if not m or m.end() <= end:
                break
            end = m.end()
        # following short lines of an address block; one blank line allowed between them
        pos, n_lines, blank = end, 0, 0
        while n_lines < 5:
            nl = text.find("\n", pos)
            if nl < 0 or text[pos:nl].strip(" \t\r,"):
                break  # rest of the current line is not empty: the block does not continue on a new line
            line_end = text.find("\n", nl + 1)
            line_end = len(text) if line_end < 0 else line_end
            line = text[nl + 1:line_end].rstrip("\r")
            if not line.strip(" \t>"):
                blank += 1
                if blank > 1:
                    break
                pos = line_end
                continue
            if len(line) > 60 or not self._LINE.match(line):
                break
            end = _rstrip(text, nl + 1, line_end)
            pos, n_lines, blank = line_end, n_lines + 1, 0
        return end

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        if not self._trigger.search(text) and not self._trigger_no_digit.search(text):
            return []
        out: list[RecognizerResult] = []
        for name, score, rx in self._cores:
            for m in rx.finditer(text):
                try:
                    start, core_end = m.span("pii")
                except IndexError:
                    start, core_end = m.span()
                if text[core_end - 1:core_end] == ".":
                    last = re.search(r"(\p{L}+)\.$", text[start:core_end])
                    if last and last.group(1).lower() not in _STREET_ABBREV:
                        core_end -= 1  # sentence full stop, not an abbreviation ("Island." vs "St.")
                end = self._extend(text, core_end)
                s = score + (0.1 if end > core_end else 0.0)
                out.append(self._result(entity, start, _rstrip(text, start, end), min(s, 0.95), name))
        return out

    def _result(self, entity: str, start: int, end: int, score: float, pattern: str) -> RecognizerResult:
        return RecognizerResult(entity_type=entity, start=start, end=end, score=score, analysis_explanation=None,
                                recognition_metadata={_META_NAME: self.name, _META_ID: self.id, _META_CTX: True,
                                                      "pattern": pattern})


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in " \t\r\n,;:":
        end -= 1
    return end


# ------------------------------------------------------------------------------------------ date of birth
_MONTH = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
DATE_PATTERN = (
    r"(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)?\d{2}"
    r"|(?:19|20)\d{2}[/.\-]\d{1,2}[/.\-]\d{1,2}"
    rf"|\d{{1,2}}[/.\-]{_MONTH}[/.\-](?:19|20)?\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?[ \t]+(?:of[ \t]+)?{_MONTH},?[ \t]+(?:19|20)\d{{2}}"
    rf"|{_MONTH}[ \t]+\d{{1,2}}(?:st|nd|rd|th)?,?[ \t]+(?:19|20)\d{{2}})"
)


class DateOfBirthRecognizer(RegexRecognizer):
    """Dates (numeric or with month names) preceded by "DOB", "date of birth", "born", "birthday"."""

    ENTITY = "DATE_OF_BIRTH"
    FLAGS = re.IGNORECASE | re.MULTILINE
    PATTERNS = (("dob", rf"(?<![\w/\-.])(?P<pii>{DATE_PATTERN})(?![\w/\-]|[.]\d)", None, 0.85),)
    CONTEXT = ("dob", "d.o.b", "date of birth", "birth date", "birthdate", "born", "birthday", "b.", "geboren",
               "né le", "née le", "nacimiento")
    CONTEXT_WINDOW = 30


# ------------------------------------------------------------------------------------------------ persons
class PersonCueRecognizer(RegexRecognizer):
    """Names after explicit cues ("my name is", "Dear", "Cardholder:", "Mr.", signatures, e-mail display names).

    spaCy's small model misses many names in short or templated text; these cues are high precision.
    """

    ENTITY = "PERSON"
    TRIGGER = r"\p{Lu}|\bm(?:rs?|s)\b"
    FLAGS = re.MULTILINE
    _N = PERSON_NAME
    PATTERNS = (
        ("self intro", rf"(?i:\b(?:my name is|my name's|name is|i am|i'm|this is|call me|named|called|it's|speaking with|spoke with|spoke to|talked to|transferred to|(?:it's|it is|booked|registered|listed|account is|card is) under)[ \t]+)(?P<pii>{_N})", 0.6, 0.6),
        ("speaker", rf"(?m:^[ \t>]*)(?P<pii>{NAME_WORD}(?:[ \t]+{NAME_WORD})?)[ \t]*:[ \t]*[\"“]", 0.55, 0.55),
        ("greeting", rf"(?i:\b(?:dear|hi|hello|hey|attn|attention|thanks|thank you|cheers|c/o|fao)\b[ \t,:]*)(?P<pii>{_N})", 0.6, 0.6),
        ("honorific", rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Sgt|Lt|Capt|Det|Insp|Supt|Cpl|Rev|Sergeant|Detective|Inspector|Constable|Rt[ \t]+Hon|Hon|Sen|Dame|Lord|Lady)\.?[ \t]+(?P<pii>{_N})", 0.85, 0.85),
        # informal lower case ("ask for mrs patel", "the battery is for mr okafor"): the word after the honorific
        # (not milliseconds: "200 ms delay")
        ("honorific, lower case", r"(?<![\w.])(?<!\d[ \t]?)[Mm](?:rs?|s)\.?[ \t]+(?P<pii>\p{Ll}[\p{Ll}'’\-]*\p{Ll})\b", 0.6, 0.6),
        ("kinship", rf"(?i:\b(?:my|our|his|her|their)[ \t]+(?:kid|son|daughter|child|wife|husband|partner|spouse|fianc[eé]e?|boyfriend|girlfriend|mother|mum|mom|father|dad|brother|sister|uncle|aunt|cousin|nephew|niece|grandson|granddaughter|grandmother|grandfather|friend|colleague|boss|manager|landlord|tenant|neighbou?r|carer|caregiver|advisor|adviser)[ \t,]+)(?P<pii>{_N})", 0.6, 0.6),
        ("done by", rf"(?i:\b(?:directed|written|produced|signed|sent|reported|submitted|approved|reviewed|created|prepared|authored|raised|handled|escalated|verified|called|contacted|authori[sz]ed|initiated|requested|opened|closed|assigned)[ \t]+(?:by|to)[ \t]*:?[ \t]*)(?P<pii>{_N})", 0.6, 0.6),
        ("labelled", rf"(?i:\b(?:cardholder|card holder|account holder|name on (?:the )?card|name|full name|customer name|customer|client|beneficiary|payee|payer|sender|recipient|applicant|analyst|investigator|agent|contact|holder|signed|from|to|cc|reply-to|signatory|authorised by|authorized by|approved by|reviewed by|assigned to)[ \t]*[:=][ \t]*)\"?(?P<pii>{_N})", 0.75, 0.75),
        ("signature", rf"(?i:\b(?:regards|kind regards|best regards|warm regards|best wishes|all the best|best|thanks|thank you|many thanks|cheers|sincerely|yours sincerely|yours truly|yours faithfully|respectfully|warmly|take care|br|rgds),?[ \t]*\r?\n(?:[ \t]*\r?\n)?[ \t]*)(?P<pii>{_N})(?=[ \t]*(?:\r?\n|$|,))", 0.75, 0.75),
        ("payee", rf"(?i:\b(?:payment|transfer|transferred|paid|pay|sent|send|wire|remittance|refund|reimbursement|p2p|zelle|venmo|standing order|direct debit|rent)\b[^\n.]{{0,15}}?\b(?:to|from)[ \t]+)(?P<pii>{PERSON_NAME2})", 0.6, 0.6),
        # a role noun or a contact verb directly before a name, without a colon: "Payee name Amber Garner",
        # "beneficiary Jo Bloggs", "payable to ...", "Customer Scott Daniels called in", "call with ...", "Called ..."
        ("role named", rf"(?i:\b(?:(?:payee|payer|beneficiary|recipient|remitter|sender|account holder|card ?holder|customer|client|applicant|signatory)[ \t]+name|payable to|made out to|in favou?r of|on behalf of|call(?:ed|ing)?(?:[ \t]+(?:to|with|from))?|contacted|e-?mailed|messaged|texted|rang|phoned)[ \t]+)(?P<pii>{_N})", 0.6, 0.6),
        ("role", rf"(?i:\b(?:payee|payer|beneficiary|recipient|remitter|sender|account holder|card ?holder|customer|client|applicant|signatory)[ \t]+)(?P<pii>{PERSON_NAME2})", 0.6, 0.6),
        # bank-statement memos in capitals: initials and a surname after a payment code ("DD TO A KOWALSKI",
        # "SO J.SMITH SAVINGS", "BGC MRS J O'REILLY", "FASTER PAYMENT FROM K NGUYEN")
        ("memo initials surname", rf"\b(?:DD|SO|STO|TFR|TRF|BGC|BACS|CHAPS|FPI|FPO|SEPA|PAYMENT|PYMT|PMT|TRANSFER|XFER|ZELLE|VENMO|WIRE|REMITTANCE)\b(?:[^\n.]{{0,20}}?\b(?:TO|FROM))?[ \t]+(?P<pii>(?:(?:MR|MRS|MS|MISS|DR)\.?[ \t]+)?\p{{Lu}}(?:[ \t.][ \t]?\p{{Lu}}){{0,2}}[ \t.][ \t]?\p{{Lu}}[\p{{Lu}}'’\-]*\p{{Lu}})\b", 0.6, 0.6),
        # a maiden or birth name ("Olga Petrova (née Smirnova)", "geb. Schulz")
        ("birth name", rf"(?i:\b(?:née|nee|geb\.|geborene)[ \t]+)(?P<pii>{_N})", 0.75, 0.75),
        ("display name", rf"\"?(?P<pii>{_N})\"?[ \t]*<[^<>@\s]+@[^<>\s]+>", 0.85, 0.85),
        # the same in capitals, two to four words ("PAMBE OUMA <...>", "DEBBIE Ó MAOILÉADAIGH <...>"); a service
        # name such as "FRAUD TEAM" is refused by validate()
        ("display name, capitals", r"\"?(?P<pii>\p{Lu}[\p{Lu}'’\-]+(?:[ \t]+(?:\p{Lu}\.|\p{Lu}[\p{Lu}'’\-]*)){1,3})\"?[ \t]*<[^<>@\s]+@[^<>\s]+>", 0.85, 0.85),
        ("name and name", rf"(?P<pii>{NAME_WORD}[ \t]+{NAME_WORD})(?=[ \t]+(?:\(|<)?(?:customer|cardholder|client|account holder)\b)", 0.6, 0.6),
    )
    CONTEXT = ()

    def validate(self, value: str, match) -> bool:
        words = value.replace("\t", " ").split()
        if not words:
            return False
        if value.isupper():  # a memo's "A KOWALSKI" / "J.SMITH": its surname decides ("PAYMENT TO A FRIEND")
            return value.replace(".", " ").split()[-1].lower().strip("'’") not in _MEMO_NOT_SURNAMES
        if words[0].lower().strip("'’") in NOT_NAMES or any(_CONTRACTION.search(w) for w in words):
            return False
        if all(w.lower().strip(".") in NOT_NAMES for w in words):
            return False
        return not any(ch.isdigit() for ch in value)


# words that follow a number in service text and are not names ("Call 0871... Identifier Code", "... Del Thurs")
_AFTER_NUMBER_NOT_NAMES = NOT_NAMES | frozenset(
    "code codes identifier id ref pin number no claim prize award bonus points valid expires exp std rate mins "
    "mon tue tues wed thu thur thurs fri sat del delivery".split())


class PersonAfterNumberRecognizer(PersonCueRecognizer):
    """A name right after a phone, card, account or reference number: "tel 020 7946 0958 Mark Twain",
    "Card 4111... (Jane Roe)", "07700 900123 - Priya Patel". The learned NER reads a capitalised pair after a
    number as the rest of an address, or not at all. The number has six digits or more (house numbers and postcodes
    have fewer; the number is at most 32 characters long, which keeps the pattern linear on long digit runs), the
    name two name words or more, it ends the clause, and none of its words is a service word."""

    TRIGGER = r"\d"
    PATTERNS = (
        ("after a number", rf"(?<![\w.])(?:\+|#)?(?=(?:[ \t().\-/]*\d){{6}})\d[\d \t().\-/]{{4,30}}\d\)?[ \t]*[,;:/\-–—(]?[ \t]*(?P<pii>{PERSON_NAME2})(?=[ \t]*(?:[,.;:!?)\]]|\r?\n|$)|[ \t]+\p{{Ll}})", 0.6, 0.6),
    )

    def validate(self, value: str, match) -> bool:
        words = [w.lower().strip(".'’") for w in value.replace("\t", " ").split()]
        return bool(words) and not any(w in _AFTER_NUMBER_NOT_NAMES for w in words) and super().validate(value, match)


class NameLineRecognizer(PersonCueRecognizer):
    """A line holding only a name (2-4 capitalised words or initials) in a multi-line text: signature blocks,
    letter heads, quoted e-mail footers."""

    TRIGGER = r"\n"
    PATTERNS = (
        ("name line", rf"(?m:^[ \t>]*)(?P<pii>{NAME_WORD}(?:[ \t]+(?:{NAME_INITIAL}|{_PARTICLE_IN_NAME}|{NAME_WORD})){{1,3}})[ \t]*\r?$", 0.55, 0.55),
    )


class PersonMentionRecognizer(EntityRecognizer):
    """More of the names spaCy already found in the same text.

    spaCy tags "Anna" in "Anna, Tom and Lea" but not the others, and the first mention of "Borkowski" but not the
    second. This recognizer (1) marks every other whole-word occurrence of a tagged name, and of each of its
    capitalised parts, and (2) extends a tagged name to the other members of a list of capitalised words
    ("A, B, C and D", "A B; C D; E F") it belongs to. It reads spaCy's PERSON entities from the NLP artifacts, so
    it adds nothing when NER is off.
    """

    ENTITY = "PERSON"
    _LIST = re.compile(
        rf"{NAME_WORD}(?:[ \t]+{NAME_WORD})?(?:[ \t]*,[ \t]*{NAME_WORD}(?:[ \t]+{NAME_WORD})?)+,?[ \t]+(?:and|or|&)[ \t]+{NAME_WORD}(?:[ \t]+{NAME_WORD})?"
        rf"|{NAME_WORD}(?:[ \t]+{NAME_WORD})?[ \t]+(?:and|or|&)[ \t]+{NAME_WORD}(?:[ \t]+{NAME_WORD})?"
        rf"|{NAME_WORD}(?:[ \t]+{NAME_WORD})?(?:[ \t]*;[ \t]*{NAME_WORD}(?:[ \t]+{NAME_WORD})?)+")  # "A B; C D; E F"
    _ITEM = re.compile(rf"{NAME_WORD}(?:[ \t]+{NAME_WORD})?")

    def __init__(self, supported_language: str = "en", supported_entity: Optional[str] = None,
                 name: Optional[str] = None, **kwargs) -> None:
        super().__init__(supported_entities=[supported_entity or self.ENTITY],
                         supported_language=supported_language, name=name, context=None)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if (entities and entity not in entities) or nlp_artifacts is None or not nlp_artifacts.entities:
            return []
        persons = [e for e in nlp_artifacts.entities if e.label_ == "PERSON"]
        if not persons:
            return []
        known: set[tuple[int, int]] = {(e.start_char, e.end_char) for e in persons}
        out: list[RecognizerResult] = []
        # (1) other mentions of the names and of their parts
        needles: set[str] = set()
        for e in persons:
            t = e.text.strip()
            if len(t) > MAX_NAME_CHARS or not any(ch.isalpha() for ch in t):
                continue  # no name is that long or letter-free (and a long needle makes the search quadratic)
            if len(t) >= 3:
                needles.add(t)
            for part in t.split():
                part = part.strip(".,'’")
                if len(part) >= 3 and part[0].isupper() and part.lower() not in NOT_NAMES:
                    needles.add(part)
        if needles:
            # one alternation per text (longest first), not one compiled pattern per name: the parts of a longer
            # match are covered by it
            # (the standard library's re: this pattern is new for every text, and its compiler is several times
            # faster than the `regex` module's; same matches for a literal alternation)
            alt = "|".join(_stdre.escape(n) for n in sorted(needles, key=lambda n: (-len(n), n)))
            for m in _stdre.finditer(rf"(?<![\w])(?:{alt})(?![\w])", text):
                if (m.start(), m.end()) not in known:
                    out.append(self._result(entity, m.start(), m.end(), 0.6, "repeated mention"))
        # (2) lists that contain a tagged name
        for m in self._LIST.finditer(text):
            if not any(m.start() <= s and e <= m.end() for s, e in known):
                continue
            for it in self._ITEM.finditer(text, m.start(), m.end()):
                words = it.group().split()
                if any(w.lower() in NOT_NAMES for w in words):
                    continue
                if (it.start(), it.end()) not in known:
                    out.append(self._result(entity, it.start(), it.end(), 0.55, "name list"))
        return out

    def _result(self, entity: str, start: int, end: int, score: float, pattern: str) -> RecognizerResult:
        return RecognizerResult(entity_type=entity, start=start, end=end, score=score, analysis_explanation=None,
                                recognition_metadata={_META_NAME: self.name, _META_ID: self.id, _META_CTX: True,
                                                      "pattern": pattern})


# --------------------------------------------------------------------------------------- GPS coordinates
class GeoCoordinateRecognizer(RegexRecognizer):
    """A latitude / longitude pair after a location cue ("GPS 51.5007, -0.1246", "device location: 40.7128 N,
    74.0060 W", "lat 51.50072 lon -0.12462"): a position is as identifying as a street address. Both numbers have
    three decimals or more (about 100 m) and lie in range; without a cue a pair of decimals is left alone (scores,
    amounts)."""

    ENTITY = "LOCATION"
    FLAGS = re.IGNORECASE
    _NUM = r"[-+−]?\d{1,3}\.\d{3,8}°?"
    PATTERNS = (
        ("lat, lon", rf"(?<![\w.\-])(?P<pii>{_NUM}(?:[ \t]*[NS]\b)?[ \t]*[,;/ ][ \t]*{_NUM}(?:[ \t]*[EW]\b)?)(?![\w.]|,\d)", None, 0.85),
        ("lat .. lon ..", rf"(?P<pii>(?:lat|latitude)[ \t]*[:=]?[ \t]*{_NUM}[ \t]*[,;]?[ \t]*(?:lon|lng|long|longitude)[ \t]*[:=]?[ \t]*{_NUM})", 0.85, 0.85),
    )
    CONTEXT = ("gps", "coordinates", "coords", "geolocation", "geo-location", "geo location", "location", "lat/lon",
               "lat/long", "latlong", "position", "pinned", "located at", "geo")
    CONTEXT_WINDOW = 30
    TRIGGER = r"\d\.\d{3}"

    def validate(self, value: str, match) -> bool:
        nums = [float(x.replace("−", "-")) for x in re.findall(r"[-+−]?\d{1,3}\.\d+", value)]
        return len(nums) == 2 and abs(nums[0]) <= 90 and abs(nums[1]) <= 180


# ------------------------------------------------------------------------------------- spelled-out e-mail
_OB_OPEN, _OB_CLOSE = r"[ \t]*[\[\(\{<][ \t]*", r"[ \t]*[\]\)\}>][ \t]*"
_OB_AT = rf"(?:{_OB_OPEN}(?:at|@){_OB_CLOSE}|[ \t]+at[ \t]+|[ \t]+@[ \t]*|[ \t]*@[ \t]+)"
_OB_DOT = rf"(?:{_OB_OPEN}(?:dot|\.){_OB_CLOSE}|[ \t]+dot[ \t]+|\.)"
_OB_LABEL = r"[a-z0-9](?:[a-z0-9_%+\-]{0,62}[a-z0-9])?"
_OB_TLD = ("com|org|net|edu|gov|mil|int|info|biz|io|co|me|eu|uk|ie|de|at|ch|fr|be|nl|lu|es|pt|it|se|no|dk|fi|is|pl|"
           "cz|sk|hu|ro|bg|gr|hr|si|ee|lv|lt|tr|ru|ua|us|ca|mx|br|ar|cl|au|nz|in|pk|sg|hk|jp|cn|kr|za|ng|ke|ae|il")
# an "at" spelled out or bracketed, or an "@" or "." bracketed / spaced: what a plain e-mail pattern cannot read
_OB_MARK = re.compile(r"(?i)[\[\(\{<][ \t]*(?:at|@|dot|\.)[ \t]*[\]\)\}>]|[ \t]@|@[ \t]|[ \t]dot[ \t]|[ \t]at[ \t]")
_OB_PLAIN_AT = re.compile(r"(?i)[ \t]+at[ \t]+")
# mailbox providers (the free-mail domains of the e-mail domain class): "name at gmail.com" is an address even with a
# one-word local part
_MAIL_PROVIDERS = frozenset(d.split(".", 1)[0] for d in FREE_MAIL_DOMAINS)


class ObfuscatedEmailRecognizer(RegexRecognizer):
    """E-mail addresses written to slip past filters: "jane dot doe at gmail dot com", "jane[at]gmail[dot]com",
    "j.smith (at) example (dot) org", "k.wojcik @ wp.pl". Presidio's EmailRecognizer reads only the plain form.

    A bracketed or spaced "@"/"at"/"dot" is enough. A plain " at " needs a mailbox-like local part (a letter and a
    dot, underscore, digit or spelled "dot") or a mailbox provider's domain, so "shop at amazon dot com" and
    "USD 187 at Booking.com" stay text. The address ends in a common top-level domain.
    """

    ENTITY = "EMAIL_ADDRESS"
    # only texts with a mark the validation can accept are scanned (most texts have an " at ")
    TRIGGER = (r"(?i)[\[\(\{<][ \t]*(?:at|@|dot)[ \t]*[\]\)\}>]|[ \t]@|@[ \t]|[ \t]dot[ \t]|"
               r"[._\d][a-z0-9]*[ \t]+at[ \t]+[a-z0-9\-]+\.[a-z]|\bat[ \t]+(?:" + "|".join(sorted(_MAIL_PROVIDERS)) + r")\b")
    FLAGS = re.IGNORECASE
    PATTERNS = (
        ("spelled-out e-mail",
         rf"(?<![\w.@])(?P<pii>{_OB_LABEL}(?:{_OB_DOT}{_OB_LABEL}){{0,3}}{_OB_AT}{_OB_LABEL}(?:{_OB_DOT}{_OB_LABEL}){{0,3}}"
         rf"{_OB_DOT}(?:{_OB_TLD}))(?![\w@]|\.\w)", 0.9, 0.9),
    )

    def validate(self, value: str, match) -> bool:
        if not _OB_MARK.search(value):
            return False  # a plain address: Presidio's EmailRecognizer
        plain = _OB_PLAIN_AT.search(value)
        if plain is None or re.search(rf"(?i){_OB_OPEN}(?:at|@){_OB_CLOSE}|[ \t]@|@[ \t]", value):
            return True
        local, domain = value[:plain.start()], value[plain.end():]
        if not re.search(r"\p{L}", local):
            return False  # "USD 187 at Booking.com"
        first_label = re.split(r"(?i)[ \t]+dot[ \t]+|[\[\(\{<]|\.", domain, maxsplit=1)[0].strip().lower()
        return first_label in _MAIL_PROVIDERS or bool(re.search(r"(?i)[\d._]|[ \t]dot[ \t]", local))


class UrlFinanceRecognizer(RegexRecognizer):
    """URLs: scheme or www URLs, and bare domains whose suffix is a real public suffix (tldextract's bundled
    snapshot, offline). Replaces Presidio's UrlRecognizer, whose regex was the most expensive in the registry; the
    stage's policy keeps URLs (they are fraud signal), detection still stops other recognizers from reading parts
    of a URL as identifiers."""

    ENTITY = "URL"
    TRIGGER = r"://|www\.|\w\.[A-Za-z]{2,}"
    FLAGS = re.IGNORECASE
    _TAIL = r"[^\s<>\"'`]*"
    PATTERNS = (
        ("scheme url", r"(?<![\w@])(?P<pii>(?:https?|ftp)://[^\s<>\"'`]+)", 0.6, 0.6),
        ("www url", r"(?<![\w@./])(?P<pii>www\.[^\s<>\"'`]+)", 0.6, 0.6),
        ("bare domain", r"(?<![\w@./\-])(?P<pii>(?:[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?\.)+[a-z]{2,24}(?:/[^\s<>\"'`]*)?)(?![\w@\-])", 0.5, 0.5),
    )

    def validate(self, value: str, match) -> bool:
        if "://" in value or value.lower().startswith("www."):
            return True
        import tldextract.tldextract as tld_mod

        host = value.split("/", 1)[0]
        suffix = host.rsplit(".", 1)[-1]
        if not (suffix.islower() or (suffix.isupper() and host.isupper())):
            return False  # "H.No. 04" (an Indian house number), "Mr.Smith": domains are written in one case
        ext = tld_mod.TLD_EXTRACTOR(host)
        return bool(ext.suffix and ext.domain)

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        out = []
        for r in super().analyze(text, entities, nlp_artifacts):
            end = r.end
            while end > r.start and text[end - 1] in ".,;:!?)]}'\"":
                end -= 1
            if end > r.start:
                r.end = end
                out.append(r)
        return out


# ------------------------------------------------------------------------------ evaluation-only extras
class AgeRecognizer(RegexRecognizer):
    """Ages ("36 years old", "aged 41", "at the age of 66", "turned 35")."""

    ENTITY = "AGE"
    FLAGS = re.IGNORECASE | re.MULTILINE
    PATTERNS = (
        ("years old", r"(?<![\w.])(?P<pii>\d{1,3})(?:[ \t\-]*(?:years?|yrs?|y/?o)(?:[ \t\-]*old)?)\b", 0.6, 0.6),
        ("aged", r"\b(?:aged?|age of|turned|turns|turning|turn)[ \t]+(?P<pii>\d{1,3})\b(?![.,/:]\d)", 0.6, 0.6),
        ("is a NN", r"\b(?:is|was|am|i'm|a)[ \t]+(?P<pii>\d{1,2})(?=[ \t]+(?:year|yr|y/o))", 0.6, 0.6),
    )


class TitleRecognizer(RegexRecognizer):
    """Honorifics (TITLE in the presidio-research data set)."""

    ENTITY = "TITLE"
    TRIGGER = r"(?:M[rs]|Mrs|Miss|Dr|Prof)"
    FLAGS = re.MULTILINE
    PATTERNS = (("honorific", r"(?<![\w])(?P<pii>(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof)\.?)(?=[ \t]+\p{Lu})", 0.6, 0.6),)


class TimestampRecognizer(RegexRecognizer):
    """Date-times and ISO dates (DATE_TIME). Off in the product entity set: transaction dates are signal."""

    ENTITY = "DATE_TIME"
    FLAGS = re.IGNORECASE | re.MULTILINE
    PATTERNS = (
        ("iso datetime", r"(?<![\w\-])(?P<pii>(?:19|20)\d{2}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+\-]\d{2}:?\d{2})?)?)(?![\w\-])", 0.6, 0.6),
        ("date", rf"(?<![\w/\-.])(?P<pii>{DATE_PATTERN})(?![\w/\-]|[.]\d)", 0.5, 0.5),
    )


# ------------------------------------------------------------------------------------------- gate patterns
class GatePatternRecognizer(EntityRecognizer):
    """The leakage gate's own pattern scan (`gate.pattern_findings`: e-mails with any top-level domain, Luhn cards,
    SSN, ABA, IBAN, libphonenumber's matcher) as a recognizer, so that whatever the gate would flag at its
    threshold is detected and replaced first. Without it an address at an unusual domain ("x@shop.zzz") or a number
    glued to a word ("txt+447700900123") passes the detector, then fails the whole run at the gate."""

    ENTITIES = ["EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "ABA_ROUTING", "PHONE_NUMBER", "IBAN_CODE"]
    MIN_SCORE = 0.85  # the gate's default anonymize.gate.min_score: findings at or above it fail the gate

    def __init__(self, supported_language: str = "en", supported_entities: Optional[list[str]] = None,
                 min_score: float = MIN_SCORE, name: Optional[str] = None, **kwargs) -> None:
        self.min_score = float(min_score)
        super().__init__(supported_entities=supported_entities or list(self.ENTITIES),
                         supported_language=supported_language, name=name or "GatePatternRecognizer", context=None)

    def load(self) -> None:
        pass

    def analyze(self, text: str, entities: list[str], nlp_artifacts=None) -> list[RecognizerResult]:
        from pipeline.anonymize.gate import pattern_findings

        want = set(entities or self.supported_entities) & set(self.supported_entities)
        return [RecognizerResult(entity_type=f.type, start=f.start, end=f.end, score=f.score,
                                 analysis_explanation=None,
                                 recognition_metadata={_META_NAME: self.name, _META_ID: self.id})
                for f in pattern_findings(text) if f.type in want and f.score >= self.min_score]
