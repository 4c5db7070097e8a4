"""Fake but checksum-valid finance identifiers, the customer population and the canaries.

Everything takes an explicit `random.Random` (or a seeded Faker) so output depends only on the seed.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass
from datetime import date, timedelta

import phonenumbers
from faker import Faker

# --------------------------------------------------------------------------------------------- checksums


def luhn_check_digit(partial: str) -> str:
    """Check digit that makes `partial + digit` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 12:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _iban_int(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s))


def iban_with_check(country: str, bban: str) -> str:
    check = 98 - _iban_int(bban + country + "00") % 97
    return f"{country}{check:02d}{bban}"


def iban_valid(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    return len(s) >= 15 and _iban_int(s[4:] + s[:4]) % 97 == 1


def aba_valid(routing: str) -> bool:
    if len(routing) != 9 or not routing.isdigit():
        return False
    d = [int(c) for c in routing]
    return (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10 == 0


# --------------------------------------------------------------------------------------------- generators

CARD_NETWORKS = (  # name, prefixes, length, weight
    ("visa", ("4",), 16, 45),
    ("mastercard", ("51", "52", "53", "54", "55", "2221", "2720"), 16, 35),
    ("amex", ("34", "37"), 15, 10),
    ("discover", ("6011", "65"), 16, 6),
    ("jcb", ("3528", "3589"), 16, 4),
)
_NET_WEIGHTS = [w for *_, w in CARD_NETWORKS]


def card_number(rng: random.Random) -> tuple[str, str]:
    name, prefixes, length, _ = rng.choices(CARD_NETWORKS, weights=_NET_WEIGHTS)[0]
    prefix = rng.choice(prefixes)
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return name, body + luhn_check_digit(body)


def format_card(number: str, style: str) -> str:
    """style: compact | space | dash."""
    if style == "compact":
        return number
    sep = " " if style == "space" else "-"
    if len(number) == 15:  # amex 4-6-5
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def _digits(rng: random.Random, k: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(k))


def _letters(rng: random.Random, k: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(k))


IBAN_BBAN = {  # country -> BBAN builder (structure as in the SWIFT IBAN registry, digits for alphanumerics)
    "DE": lambda r: _digits(r, 18),
    "GB": lambda r: _letters(r, 4) + _digits(r, 14),
    "FR": lambda r: _digits(r, 23),
    "ES": lambda r: _digits(r, 20),
    "NL": lambda r: _letters(r, 4) + _digits(r, 10),
    "IT": lambda r: _letters(r, 1) + _digits(r, 22),
}


def iban(rng: random.Random, country: str) -> str:
    return iban_with_check(country, IBAN_BBAN[country](rng))


def format_iban(value: str, spaced: bool) -> str:
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if spaced else value


def bic(rng: random.Random, country: str) -> str:
    base = _letters(rng, 4) + country + rng.choice(string.ascii_uppercase + "23456789") + rng.choice(string.ascii_uppercase + "23456789")
    return base + (rng.choice(("XXX", _letters(rng, 1) + _digits(rng, 2))) if rng.random() < 0.5 else "")


_ABA_PREFIXES = [f"{i:02d}" for i in list(range(1, 13)) + list(range(21, 33)) + list(range(61, 73))]


def aba_routing(rng: random.Random) -> str:
    while True:
        body = rng.choice(_ABA_PREFIXES) + _digits(rng, 6)
        d = [int(c) for c in body]
        partial = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5]
        check = (10 - partial % 10) % 10
        routing = body + str(check)
        if aba_valid(routing):
            return routing


def us_ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area == 666:
            continue
        group, serial = rng.randint(1, 99), rng.randint(1, 9999)
        s = f"{area:03d}-{group:02d}-{serial:04d}"
        if len(set(s.replace("-", ""))) > 2:
            return s


PHONE_REGIONS = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR"}
_PHONE_NSN = {  # region -> (country code, national significant number builder)
    "US": (1, lambda r: str(r.randint(201, 989)) + str(r.randint(200, 999)) + _digits(r, 4)),
    "GB": (44, lambda r: r.choice(("7", "20", "161", "121")) + _digits(r, 8)),
    "DE": (49, lambda r: r.choice(("151", "160", "171", "30", "89", "40")) + _digits(r, 8)),
    "FR": (33, lambda r: r.choice("1234567") + _digits(r, 8)),
}


def phone(rng: random.Random, region: str) -> str:
    """A libphonenumber-valid number in E.164."""
    cc, build = _PHONE_NSN[region]
    for _ in range(200):
        num = phonenumbers.parse(f"+{cc}{build(rng)}")
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    raise RuntimeError(f"could not draw a valid {region} phone number")  # pragma: no cover


_PN_FORMATS = {
    "e164": phonenumbers.PhoneNumberFormat.E164,
    "intl": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
}


def phone_formats(e164: str, styles: list[str]) -> tuple[str, ...]:
    """The number in each style: e164 | intl | national | dashed (US 415-555-0132) | dotted (US 415.555.0132)."""
    num = phonenumbers.parse(e164)
    out = []
    for style in styles:
        if style in ("dashed", "dotted") and num.country_code == 1:
            nsn = str(num.national_number)
            sep = "-" if style == "dashed" else "."
            out.append(sep.join((nsn[:3], nsn[3:6], nsn[6:])))
        else:
            out.append(phonenumbers.format_number(num, _PN_FORMATS.get(style, phonenumbers.PhoneNumberFormat.INTERNATIONAL)))
    return tuple(out)


def format_phone(e164: str, style: str) -> str:
    return phone_formats(e164, [style])[0]


def ipv4(rng: random.Random) -> str:
    while True:
        a = rng.randint(11, 223)
        if a not in (100, 127, 169, 172, 192, 198, 203):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


# --------------------------------------------------------------------------------------------- customers

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR")
LOCALE_WEIGHTS = (55, 20, 15, 10)
IBAN_COUNTRY = {"en_US": ("GB", "NL", "DE"), "en_GB": ("GB",), "de_DE": ("DE",), "fr_FR": ("FR", "ES", "IT")}
MAIL_DOMAINS = {
    "en_US": ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"),
    "en_GB": ("gmail.com", "btinternet.com", "yahoo.co.uk", "hotmail.co.uk"),
    "de_DE": ("gmail.com", "web.de", "gmx.de", "t-online.de"),
    "fr_FR": ("gmail.com", "orange.fr", "free.fr", "laposte.net"),
}
_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "é": "e", "è": "e", "ê": "e", "ë": "e",
                           "à": "a", "â": "a", "ç": "c", "î": "i", "ï": "i", "ô": "o", "û": "u", "ù": "u", "ÿ": "y"})


@dataclass(frozen=True)
class Customer:
    customer_id: str
    locale: str
    name: str
    first_name: str
    email: str
    phone: str  # E.164
    card_network: str
    card_number: str
    card_expiry: str  # MM/YY
    cvv: str
    iban: str
    bic: str
    ssn: str
    routing: str
    account_number: str
    street_address: str
    city: str
    postcode: str
    date_of_birth: str  # ISO yyyy-mm-dd
    ip_address: str
    canary: bool = False


def _email_for(rng: random.Random, first: str, last: str, locale: str, idx: int) -> str:
    f = "".join(c for c in first.lower().translate(_TRANSLIT) if c.isalnum()) or "user"
    l = "".join(c for c in last.lower().translate(_TRANSLIT) if c.isalnum()) or "mail"
    style = rng.randrange(4)
    local = (f"{f}.{l}", f"{f[0]}{l}", f"{f}{l}{idx % 97}", f"{f}_{l}{1950 + idx % 60}")[style]
    return f"{local}@{rng.choice(MAIL_DOMAINS[locale])}"


def make_customers(count: int, seed: int) -> list[Customer]:
    """`count` customers, each with fixed PII; customer 0 is the canary customer."""
    rng = random.Random(f"customers:{seed}")
    fakers = {}
    for i, loc in enumerate(LOCALES):
        f = Faker(loc)
        f.seed_instance(seed * 101 + i)
        fakers[loc] = f
    out = [canary_customer()]
    start = date(1940, 1, 1)
    for idx in range(1, count):
        loc = rng.choices(LOCALES, weights=LOCALE_WEIGHTS)[0]
        fk = fakers[loc]
        first, last = fk.first_name(), fk.last_name()
        net, card = card_number(rng)
        country = rng.choice(IBAN_COUNTRY[loc])
        dob = start + timedelta(days=rng.randrange(365 * 63))
        out.append(
            Customer(
                customer_id=f"C{idx:06d}",
                locale=loc,
                name=f"{first} {last}",
                first_name=first,
                email=_email_for(rng, first, last, loc, idx),
                phone=phone(rng, PHONE_REGIONS[loc]),
                card_network=net,
                card_number=card,
                card_expiry=f"{rng.randint(1, 12):02d}/{rng.randint(25, 31)}",
                cvv=_digits(rng, 4 if net == "amex" else 3),
                iban=iban(rng, country),
                bic=bic(rng, country),
                ssn=us_ssn(rng),
                routing=aba_routing(rng),
                account_number=_digits(rng, rng.choice((8, 10, 12))),
                street_address=fk.street_address().replace("\n", " "),
                city=fk.city(),
                postcode=fk.postcode(),
                date_of_birth=dob.isoformat(),
                ip_address=ipv4(rng),
            )
        )
    return out


# --------------------------------------------------------------------------------------------- canaries

CANARY = Customer(
    customer_id="C000000",
    locale="en_US",
    name="Zebulon Quartermaine-Vasquez",
    first_name="Zebulon",
    email="zebulon.quartermaine@vasquez-canary.net",
    phone="+14155550187",
    card_network="visa",
    card_number="4929187355203311",
    card_expiry="11/29",
    cvv="731",
    iban="GB53QZBV40516298730451",
    bic="QZBVGB2LXXX",
    ssn="512-84-3097",
    routing="021000021",
    account_number="7730019284516",
    street_address="1187 Wisteria Hollow Lane",
    city="Quillfeather Falls",
    postcode="99123",
    date_of_birth="1960-02-29",
    ip_address="91.198.174.77",
    canary=True,
)

CANARY_FIELDS = (  # (type, Customer attribute)
    ("PERSON", "name"),
    ("EMAIL_ADDRESS", "email"),
    ("PHONE_NUMBER", "phone"),
    ("CREDIT_CARD", "card_number"),
    ("IBAN_CODE", "iban"),
    ("US_SSN", "ssn"),
    ("US_BANK_NUMBER", "account_number"),
    ("STREET_ADDRESS", "street_address"),
    ("DATE_OF_BIRTH", "date_of_birth"),
    ("IP_ADDRESS", "ip_address"),
    ("SWIFT_CODE", "bic"),
)


def canary_customer() -> Customer:
    return CANARY


def canaries() -> list[dict[str, str]]:
    return [{"type": t, "value": getattr(CANARY, attr)} for t, attr in CANARY_FIELDS]
