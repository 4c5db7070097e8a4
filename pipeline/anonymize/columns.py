"""Per-column policy for the record table (`anonymize.columns` in params.yaml).

Every column of the ingested table gets exactly one action:

* core columns: `record_id`, `source`, `label`, `event_time`, `dup_cluster`, `label_conflict` are kept;
  `text` is always scanned (patterns + NER); `group_id` is always pseudonymized as `CUSTOMER` (so splits still group
  by customer); `source_key` is pseudonymized as `SOURCE_KEY` unless the policy says `keep` or `drop`;
* `drop` removes the column, `pseudonymize` replaces each whole value by its keyed token (same token as the value
  would get inside free text, because the column's entity type is used), `generalize` coarsens it (date of birth to
  year, postcode to outward code, IP to its /24 or /48 network), `keep` passes it through, `scan` detects PII inside
  it with patterns only (no NER);
* any other string column is treated conservatively: scanned with patterns + NER like `text`;
* non-string columns without a policy (amounts, scores, flags) pass through.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Callable, Optional

import pyarrow as pa

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.config import AnonymizeParams

KEPT_CORE = ("record_id", "source", "label", "event_time", "dup_cluster", "label_conflict")

# Entity type of a structured column (same names as the detector's, so tokens join with those found in text).
COLUMN_TYPES: dict[str, str] = {
    "customer_name": "PERSON",
    "name": "PERSON",
    "analyst": "PERSON",
    "email": "EMAIL_ADDRESS",
    "phone": "PHONE_NUMBER",
    "card_number": "CREDIT_CARD",
    "iban": "IBAN_CODE",
    "ip_address": "IP_ADDRESS",
    "street_address": "STREET_ADDRESS",
    "postcode": "POSTCODE",
    "date_of_birth": "DATE_OF_BIRTH",
    "ssn": "US_SSN",
    "routing_number": "ABA_ROUTING",
    "account_number": "US_BANK_NUMBER",
    "swift": "SWIFT_CODE",
    "bic": "SWIFT_CODE",
    "customer_id": "CUSTOMER",
    "group_id": "CUSTOMER",
    "source_key": "SOURCE_KEY",
}


def column_type(name: str) -> str:
    return COLUMN_TYPES.get(name, re.sub(r"[^A-Z]+", "_", name.upper()).strip("_") or "FIELD")


# ------------------------------------------------------------------------------------------ generalizers

_YEAR = re.compile(r"\b(19\d\d|20\d\d)\b")


def birth_year(value: str) -> Optional[str]:
    """Date of birth -> year ('1985-03-12' -> '1985'); None when no year can be read (never the raw value)."""
    v = value.strip()
    try:
        return str(date.fromisoformat(v[:10]).year)
    except ValueError:
        m = _YEAR.search(v)
        return m.group(1) if m else None


_UK_POSTCODE = re.compile(r"[A-Z]{1,2}\d[A-Z\d]?\d[A-Z]{2}")
_US_ZIP = re.compile(r"\d{5}(?:-?\d{4})?")


def postcode_area(value: str) -> Optional[str]:
    """Postcode -> outward code / area: 'SW1A 1AA' -> 'SW1A', '62704' -> '627', others -> first two characters."""
    v = " ".join(value.upper().split())
    if not v:
        return None
    compact = v.replace(" ", "")
    if _US_ZIP.fullmatch(compact.replace("-", "")) or _US_ZIP.fullmatch(compact):
        return compact[:3]
    if " " in v:
        return v.split(" ", 1)[0]
    if _UK_POSTCODE.fullmatch(compact):
        return compact[:-3]
    alnum = re.sub(r"[^A-Z0-9]", "", compact)
    return alnum[:2] or None


def ip_network(value: str) -> Optional[str]:
    """IP -> its /24 (IPv4) or /48 (IPv6) network."""
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


GENERALIZERS: dict[str, Callable[[str], Optional[str]]] = {
    "date_of_birth": birth_year,
    "dob": birth_year,
    "birth_date": birth_year,
    "postcode": postcode_area,
    "postal_code": postcode_area,
    "zip": postcode_area,
    "zipcode": postcode_area,
    "ip_address": ip_network,
    "ip": ip_network,
}


# ------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ColumnAction:
    name: str
    action: str  # keep | drop | pseudonymize | generalize | scan
    entity_type: Optional[str] = None
    ner: bool = False  # scan only: run NER too
    is_string: bool = True

    @property
    def holds_pii_values(self) -> bool:
        """Whole values are PII of `entity_type` (they feed the batch dictionary of original values)."""
        return self.action in ("drop", "pseudonymize", "generalize") and self.name != "source_key"


def plan_columns(schema: pa.Schema, cfg: "AnonymizeParams") -> list[ColumnAction]:
    """One action per input column, in input order; ConfigError for a policy that cannot be applied."""
    policies = dict(cfg.columns)
    plan: list[ColumnAction] = []
    for field in schema:
        name = field.name
        is_string = is_text_type(field.type)
        policy = policies.get(name)
        if name in KEPT_CORE:
            if policy not in (None, "keep"):
                raise ConfigError(f"anonymize.columns.{name}: core column, only 'keep' is allowed")
            plan.append(ColumnAction(name, "keep", is_string=is_string))
        elif name == "text":
            if policy not in (None, "scan"):
                raise ConfigError("anonymize.columns.text: the text column is always scanned")
            plan.append(ColumnAction(name, "scan", ner=True))
        elif name == "group_id":
            if policy not in (None, "pseudonymize"):
                raise ConfigError("anonymize.columns.group_id: always pseudonymized (splits group by it)")
            plan.append(ColumnAction(name, "pseudonymize", "CUSTOMER", is_string=is_string))
        elif name == "source_key":
            if policy not in (None, "pseudonymize", "keep", "drop"):
                raise ConfigError("anonymize.columns.source_key: use pseudonymize, keep or drop")
            plan.append(ColumnAction(name, policy or "pseudonymize", "SOURCE_KEY", is_string=is_string))
        elif policy == "generalize":
            if name not in GENERALIZERS:
                raise ConfigError(
                    f"anonymize.columns.{name}: no generalizer for this column "
                    f"(known: {', '.join(sorted(GENERALIZERS))}); use drop, pseudonymize or keep"
                )
            plan.append(ColumnAction(name, "generalize", column_type(name), is_string=is_string))
        elif policy in ("drop", "pseudonymize"):
            plan.append(ColumnAction(name, policy, column_type(name), is_string=is_string))
        elif policy == "keep":
            plan.append(ColumnAction(name, "keep", is_string=is_string))
        elif policy == "scan":
            plan.append(ColumnAction(name, "scan", ner=False, is_string=is_string))
        elif is_string:  # unknown string column: conservative, full detection
            plan.append(ColumnAction(name, "scan", ner=True))
        else:
            plan.append(ColumnAction(name, "keep", is_string=False))
    return plan


def is_text_type(t: pa.DataType) -> bool:
    """string, large_string, string_view, or a dictionary (categorical) of those."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def output_type(action: ColumnAction, in_type: pa.DataType) -> Optional[pa.DataType]:
    """Arrow type of the column in the anonymized table (None: dropped). Text columns become plain `string`."""
    if action.action == "drop":
        return None
    if action.action == "keep" and not is_text_type(in_type):
        return in_type
    return pa.string()


def apply_column(action: ColumnAction, value: object, token: Callable[[str, str], str]) -> object:
    """Value of a structured (non-scanned) column after its policy. `token(type, value)` pseudonymizes."""
    if action.action == "keep" or value is None:
        return value
    text = value if isinstance(value, str) else str(value)
    if action.action == "pseudonymize":
        return token(action.entity_type or column_type(action.name), text) if text.strip() else None
    if action.action == "generalize":
        return GENERALIZERS[action.name](text)
    raise ValueError(f"no value for action {action.action}")  # drop/scan are handled by the caller
