"""Replacement operators: keyed pseudonyms, mask, redact, reversible encryption, keep; signal-keeping helpers.

* Pseudonyms are HMAC-SHA256(key, TYPE + 0x1f + normalised value), shown as `<TYPE_0123456789ab>` (48 bits): the
  same value gives the same token in every record, source and run, and `4111 1111 1111 1111` joins
  `4111-1111-1111-1111` because values are normalised per type first (`normalize`). The key comes from
  `FRAUDSLM_PSEUDONYM_KEY` only; it is never logged or written, only its fingerprint.
* `encrypt` is deterministic AES-SIV (RFC 5297, `cryptography`) under a key derived from `FRAUDSLM_ENCRYPTION_KEY`,
  with the entity type as associated data, so encrypted values still join and authorised holders of the key can
  reverse them (`Encryptor.decrypt`). The ciphertext is written with the letters a-p (one per nibble): the token
  holds no digit, so no digit-based check of the leakage gate can fire on it.
* Signal helpers keep what helps fraud modelling without identity: card network (+ country for domestic schemes),
  IBAN country, e-mail domain class, phone country.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from pipeline.anonymize.validators import compact_upper, deobfuscate_email, digits_only
from pipeline.errors import ConfigError

KEY_ENV = "FRAUDSLM_PSEUDONYM_KEY"
ENCRYPTION_KEY_ENV = "FRAUDSLM_ENCRYPTION_KEY"
MIN_KEY_CHARS = 16
TOKEN_HEX = 12
DEFAULT_PHONE_REGION = "US"  # region assumed for phone numbers written without a country code

# Types whose values are compared as digits only.
DIGIT_TYPES = frozenset({"CREDIT_CARD", "US_SSN", "ABA_ROUTING", "US_BANK_NUMBER", "CVV", "CARD_EXPIRY"})
COMPACT_TYPES = frozenset({"IBAN_CODE", "SWIFT_CODE"})

# Every token this module writes; the gate removes exactly these shapes before scanning (and nothing looser, so no
# value can hide inside something that merely looks like a token).
_TYPE = r"[A-Z]+(?:_[A-Z]+)*"
TOKEN_RE = re.compile(rf"<{_TYPE}(?:_[0-9a-f]{{{TOKEN_HEX}}}|~[a-p]{{32,}})?>")

_WS = re.compile(r"\s+")
_NIBBLES = "abcdefghijklmnop"


# --------------------------------------------------------------------------------------------------- keys


def load_key(env: str = KEY_ENV) -> bytes:
    """The pseudonym key from the environment; ConfigError (exit 2) when missing or too short."""
    raw = os.environ.get(env, "")
    if not raw.strip():
        raise ConfigError(f"{env} is not set: the anonymize stage needs a secret pseudonym key in this variable")
    if len(raw) < MIN_KEY_CHARS:
        raise ConfigError(f"{env} is too short: use at least {MIN_KEY_CHARS} characters")
    return raw.encode("utf-8")


def key_fingerprint(key: bytes) -> str:
    """Identifies the key in reports without revealing it: first 12 hex of HMAC(key, 'fraudslm-key-fingerprint')."""
    return hmac.new(key, b"fraudslm-key-fingerprint", hashlib.sha256).hexdigest()[:12]


# ------------------------------------------------------------------------------------------ normalisation


def collapse(value: str) -> str:
    """NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", value)).strip().casefold()


def normalize_phone(value: str) -> str:
    """E.164 when `phonenumbers` can parse it (US assumed without a country code), else '+' and digits."""
    import phonenumbers

    try:
        num = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
        return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        d = digits_only(value)
        return "+" + d if d else collapse(value)


def normalize(entity_type: str, value: str) -> str:
    """Canonical form of `value` for `entity_type`, so differently written copies of one value join."""
    if entity_type in DIGIT_TYPES:
        d = digits_only(value)
        return d or collapse(value)
    if entity_type in COMPACT_TYPES:
        return compact_upper(value) or collapse(value)
    if entity_type == "EMAIL_ADDRESS":
        v = collapse(value)
        v = v[7:] if v.startswith("mailto:") else v
        return deobfuscate_email(v) if (" " in v or "[" in v or "(" in v or "{" in v or "<" in v) else v
    if entity_type == "PHONE_NUMBER":
        return normalize_phone(value)
    if entity_type == "IP_ADDRESS":
        try:
            return ipaddress.ip_address(value.strip()).compressed
        except ValueError:
            return collapse(value)
    if entity_type in ("CUSTOMER", "SOURCE_KEY"):
        return value.strip()
    return collapse(value)


# -------------------------------------------------------------------------------------------- operators


class Pseudonymizer:
    """Keyed, deterministic tokens. Holds the key; never put an instance in logs or results."""

    __slots__ = ("_key", "fingerprint", "_cache")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self.fingerprint = key_fingerprint(key)
        self._cache: dict[tuple[str, str], str] = {}

    def __repr__(self) -> str:  # never show the key
        return f"Pseudonymizer(fingerprint={self.fingerprint})"

    def digest(self, entity_type: str, value: str) -> str:
        norm = normalize(entity_type, value)
        msg = f"{entity_type}\x1f{norm}".encode("utf-8")
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:TOKEN_HEX]

    def token(self, entity_type: str, value: str) -> str:
        k = (entity_type, value)
        tok = self._cache.get(k)
        if tok is None:
            tok = f"<{entity_type}_{self.digest(entity_type, value)}>"
            if len(self._cache) < 200_000:
                self._cache[k] = tok
        return tok


def redact(entity_type: str) -> str:
    return f"<{entity_type}>"


def mask(value: str, keep_last: int = 4, masking_char: str = "*") -> str:
    """Replace every letter/digit except the last `keep_last` by `masking_char`; separators are kept."""
    alnum = [i for i, ch in enumerate(value) if ch.isalnum()]
    keep = set(alnum[len(alnum) - keep_last :]) if keep_last > 0 else set()
    if len(keep) >= len(alnum):  # too short to keep anything safely
        keep = set()
    return "".join(ch if (i in keep or not ch.isalnum()) else masking_char for i, ch in enumerate(value))


def _to_letters(data: bytes) -> str:
    return "".join(_NIBBLES[b >> 4] + _NIBBLES[b & 15] for b in data)


def _from_letters(text: str) -> bytes:
    idx = {c: i for i, c in enumerate(_NIBBLES)}
    return bytes(idx[text[i]] << 4 | idx[text[i + 1]] for i in range(0, len(text), 2))


class Encryptor:
    """Deterministic, reversible encryption (AES-SIV) of normalised values: `<TYPE~ciphertext>`."""

    __slots__ = ("_siv",)
    _TOKEN = re.compile(rf"<({_TYPE})~([a-p]+)>")

    def __init__(self, secret: bytes) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESSIV
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"fraudslm-aes-siv").derive(secret)
        self._siv = AESSIV(key)

    def __repr__(self) -> str:
        return "Encryptor(<key withheld>)"

    def encrypt(self, entity_type: str, value: str) -> str:
        norm = normalize(entity_type, value)
        ct = self._siv.encrypt(norm.encode("utf-8"), [entity_type.encode("ascii")])
        return f"<{entity_type}~{_to_letters(ct)}>"

    def decrypt(self, token: str) -> tuple[str, str]:
        """(type, normalised value) of a token written by `encrypt`; raises ValueError when it is not one."""
        from cryptography.exceptions import InvalidTag

        m = self._TOKEN.fullmatch(token.strip())
        if not m:
            raise ValueError("not an encrypted token")
        try:
            pt = self._siv.decrypt(_from_letters(m.group(2)), [m.group(1).encode("ascii")])
        except InvalidTag:
            raise ValueError("token does not decrypt under this key") from None
        return m.group(1), pt.decode("utf-8")


def load_encryptor(required: bool, env: str = ENCRYPTION_KEY_ENV) -> Optional[Encryptor]:
    """The encryptor when `FRAUDSLM_ENCRYPTION_KEY` is set; ConfigError when `required` and it is not."""
    raw = os.environ.get(env, "")
    if not raw.strip():
        if required:
            raise ConfigError(
                f"operator 'encrypt' needs a separate encryption key in {env}; set it or choose another operator"
            )
        return None
    if len(raw) < MIN_KEY_CHARS:
        raise ConfigError(f"{env} is too short: use at least {MIN_KEY_CHARS} characters")
    pseudo = os.environ.get(KEY_ENV, "")
    if pseudo and hmac.compare_digest(pseudo.encode(), raw.encode()):
        raise ConfigError(f"{env} must differ from {KEY_ENV}")
    return Encryptor(raw.encode("utf-8"))


@dataclass(frozen=True)
class OperatorRule:
    """Resolved operator for one entity type (from `anonymize.operators`)."""

    operator: str
    keep_last: int = 4
    masking_char: str = "*"


class Replacer:
    """Applies the operator policy to one detected value (operators: pipeline/anonymize/operators.py registry)."""

    def __init__(
        self,
        rules: dict[str, OperatorRule],
        default: OperatorRule,
        pseudonymizer: Pseudonymizer,
        encryptor: Optional[Encryptor] = None,
    ) -> None:
        self.rules = rules
        self.default = default
        self.pseudonymizer = pseudonymizer
        self.encryptor = encryptor
        from pipeline.anonymize.operators import get_operator

        self._ops = {r.operator: get_operator(r.operator) for r in [default, *rules.values()]}
        self.keeps = frozenset(t for t, r in rules.items() if self._ops[r.operator].keeps_value)
        if encryptor is None and any(op.needs_encryption_key for op in self._ops.values()):
            raise ConfigError(f"operator 'encrypt' needs a separate encryption key in {ENCRYPTION_KEY_ENV}")

    def rule(self, entity_type: str) -> OperatorRule:
        return self.rules.get(entity_type, self.default)

    def replace(self, entity_type: str, value: str) -> tuple[str, str]:
        """(replacement, operator name)."""
        rule = self.rule(entity_type)
        return self._ops[rule.operator].apply(self, entity_type, value, rule), rule.operator


def rules_from_params(operators: dict, default_operator: str) -> tuple[dict[str, OperatorRule], OperatorRule]:
    rules: dict[str, OperatorRule] = {}
    for name, spec in operators.items():
        if isinstance(spec, str):
            rules[name] = OperatorRule(spec)
        else:
            rules[name] = OperatorRule(spec.operator, spec.keep_last, spec.masking_char)
    return rules, OperatorRule(default_operator)


# ------------------------------------------------------------------------------------------------ signals

# (network, prefix ranges as (low, high, prefix length)); checked in order, first match wins.
_CARD_RANGES: tuple[tuple[str, tuple[tuple[int, int, int], ...]], ...] = (
    ("amex", ((34, 34, 2), (37, 37, 2))),
    ("mir", ((2200, 2204, 4),)),
    ("mastercard", ((51, 55, 2), (2221, 2720, 4))),
    ("discover", ((6011, 6011, 4), (644, 649, 3), (65, 65, 2))),
    ("jcb", ((3528, 3589, 4),)),
    ("unionpay", ((62, 62, 2),)),
    ("dankort", ((5019, 5019, 4),)),
    ("troy", ((9792, 9792, 4),)),
    ("visa", ((4, 4, 1),)),
)
# Domestic schemes identify the issuing country; international networks do not (that needs a licensed BIN table).
_SCHEME_COUNTRY = {"mir": "RU", "jcb": "JP", "unionpay": "CN", "dankort": "DK", "troy": "TR"}


def card_network(value: str) -> Optional[str]:
    d = digits_only(value)
    if len(d) < 12:
        return None
    for network, ranges in _CARD_RANGES:
        for low, high, n in ranges:
            if low <= int(d[:n]) <= high:
                return network
    return "other"


def card_bin_country(value: str) -> Optional[str]:
    net = card_network(value)
    return _SCHEME_COUNTRY.get(net) if net else None


def iban_country(value: str) -> Optional[str]:
    v = compact_upper(value)
    return v[:2] if len(v) >= 15 and v[:2].isalpha() and v[2:4].isdigit() else None


FREE_MAIL_DOMAINS = frozenset(
    """gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr ymail.com hotmail.com hotmail.co.uk hotmail.fr
    outlook.com live.com msn.com aol.com icloud.com me.com mac.com protonmail.com proton.me pm.me gmx.com gmx.de
    gmx.net web.de mail.com zoho.com yandex.com yandex.ru mail.ru inbox.com fastmail.com tutanota.com hey.com
    qq.com 163.com 126.com sina.com naver.com daum.net orange.fr free.fr laposte.net libero.it virgilio.it
    t-online.de seznam.cz wp.pl o2.pl rediffmail.com comcast.net verizon.net att.net sbcglobal.net
    btinternet.com""".split()
)
DISPOSABLE_DOMAINS = frozenset(
    """mailinator.com guerrillamail.com 10minutemail.com tempmail.com temp-mail.org throwawaymail.com yopmail.com
    trashmail.com sharklasers.com getnada.com dispostable.com maildrop.cc fakeinbox.com mintemail.com""".split()
)


def email_domain_class(value: str) -> Optional[str]:
    """free / disposable / corporate for a well-formed address, else None."""
    v = normalize("EMAIL_ADDRESS", value)
    if v.count("@") != 1:
        return None
    domain = v.rsplit("@", 1)[1].strip(".")
    if "." not in domain or not re.fullmatch(r"[a-z0-9.-]+", domain):
        return None
    if domain in DISPOSABLE_DOMAINS:
        return "disposable"
    if domain in FREE_MAIL_DOMAINS:
        return "free"
    return "corporate"


@lru_cache(maxsize=65536)
def phone_country(value: str) -> Optional[str]:
    import phonenumbers

    try:
        num = phonenumbers.parse(value, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        return None
    return phonenumbers.region_code_for_number(num) if phonenumbers.is_possible_number(num) else None


SIGNALS: dict[str, tuple[str, object]] = {
    # output column: (entity type it derives from, function of the original value)
    "card_network": ("CREDIT_CARD", card_network),
    "card_bin_country": ("CREDIT_CARD", card_bin_country),
    "iban_country": ("IBAN_CODE", iban_country),
    "email_domain_class": ("EMAIL_ADDRESS", email_domain_class),
    "phone_country": ("PHONE_NUMBER", phone_country),
}
