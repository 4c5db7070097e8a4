"""Checksums and normalisers for financial identifiers (pure functions, no PII ever logged).

Card numbers use the Luhn check, IBANs the ISO 13616 mod-97 check with per-country lengths (SWIFT IBAN registry,
embedded so detection never needs the network), ABA routing numbers the 3-7-1 weighted checksum. These are a few
lines each; `python-stdnum` would be the library to switch to if more identifier kinds are needed.
"""

from __future__ import annotations

import re

_NON_DIGIT = re.compile(r"\D")
_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27,
    "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25,
    "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18,
    "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28,
    "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}

# ISO 3166-1 alpha-2 codes (for SWIFT/BIC country position).
COUNTRY_CODES: frozenset[str] = frozenset(
    """AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY
    BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM
    FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT
    JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN
    MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT
    PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL
    TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW""".split()
)


def digits_only(value: str) -> str:
    """Keep the ASCII digits of `value` (separators, spaces and letters removed)."""
    return _NON_DIGIT.sub("", value)


def compact_upper(value: str) -> str:
    """Upper-case alphanumerics only (IBAN / BIC normal form)."""
    return _NON_ALNUM.sub("", value).upper()


def luhn_valid(value: str) -> bool:
    """Luhn (mod 10) check over the digits of `value`; False for fewer than 2 digits."""
    digits = digits_only(value)
    if len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def card_number_valid(value: str, min_len: int = 12, max_len: int = 19) -> bool:
    """Plausible payment card number: 12-19 digits, Luhn-valid, not a run of one digit."""
    digits = digits_only(value)
    if not (min_len <= len(digits) <= max_len):
        return False
    if len(set(digits)) == 1:
        return False
    return luhn_valid(digits)


def iban_valid(value: str) -> bool:
    """ISO 13616: known country, the country's length, two check digits, mod-97 == 1."""
    iban = compact_upper(value)
    if len(iban) < 15 or not iban[:2].isalpha() or not iban[2:4].isdigit():
        return False
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is None or len(iban) != expected:
        return False
    rearranged = iban[4:] + iban[:4]
    num = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(num) % 97 == 1


def aba_routing_valid(value: str) -> bool:
    """ABA routing number: 9 digits, valid Federal Reserve prefix, 3-7-1 weighted checksum."""
    d = digits_only(value)
    if len(d) != 9 or len(set(d)) == 1:
        return False
    prefix = int(d[:2])
    if not (0 <= prefix <= 12 or 21 <= prefix <= 32 or 61 <= prefix <= 72 or prefix == 80):
        return False
    n = [ord(c) - 48 for c in d]
    checksum = 3 * (n[0] + n[3] + n[6]) + 7 * (n[1] + n[4] + n[7]) + (n[2] + n[5] + n[8])
    return checksum % 10 == 0


def swift_valid(value: str) -> bool:
    """SWIFT/BIC shape: 4 letters bank, ISO country, 2 alnum location, optional 3 alnum branch."""
    v = compact_upper(value)
    if len(v) not in (8, 11):
        return False
    if not v[:4].isalpha() or v[4:6] not in COUNTRY_CODES:
        return False
    return v[6:8].isalnum()


def us_ssn_valid(value: str) -> bool:
    """US SSN structure: 9 digits, area not 000/666/9xx, group not 00, serial not 0000, not all one digit.

    Well-known sample values (123-45-6789, 078-05-1120) are still flagged: they are what people type as tests.
    """
    d = digits_only(value)
    if len(d) != 9 or len(set(d)) == 1:
        return False
    area, group, serial = d[:3], d[3:5], d[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return True


def expiry_valid(value: str) -> bool:
    """MM/YY or MM/YYYY with a real month."""
    m = re.fullmatch(r"\s*(\d{1,2})\s*[/\-.]\s*(\d{2}|\d{4})\s*", value)
    if not m:
        return False
    return 1 <= int(m.group(1)) <= 12


# spelled-out or bracketed "at" / "dot" of an e-mail address written to slip past filters
_OB_AT = re.compile(r"[ \t]*[\[({<][ \t]*(?:at|@)[ \t]*[\])}>][ \t]*|[ \t]+at[ \t]+|[ \t]*@[ \t]*", re.IGNORECASE)
_OB_DOT = re.compile(r"[ \t]*[\[({<][ \t]*(?:dot|\.)[ \t]*[\])}>][ \t]*|[ \t]+dot[ \t]+|[ \t]*\.[ \t]*", re.IGNORECASE)


def deobfuscate_email(value: str) -> str:
    """"Jane dot Doe at gmail dot com" / "jane[at]gmail[dot]com" -> "jane.doe@gmail.com" (lower case), so a
    spelled-out address and its plain form get one pseudonym. A plain address comes back lower-cased."""
    return _OB_DOT.sub(".", _OB_AT.sub("@", value.strip())).lower()
