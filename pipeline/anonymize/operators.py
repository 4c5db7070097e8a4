"""Replacement operators, registered by name (`anonymize.operators` / `anonymize.default_operator` in params.yaml).

A new operator is one `Operator` subclass decorated with `@register` (in this module, or in a module imported
before the stage runs) plus the config line that names it, e.g. `PERSON: myop`. An operator turns one detected
value into its replacement; it must never log or raise with the value. Its output must not look like PII to the
leakage gate (tokens of `pseudonym.TOKEN_RE` are cut out before the gate scans).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.anonymize.pseudonym import OperatorRule, Replacer

__all__ = ["OPERATORS", "Operator", "register", "get_operator", "operator_names"]


class Operator:
    """One replacement operator. `apply` gets the replacer (keys live there), the type, the value and its rule."""

    name: ClassVar[str] = ""
    needs_encryption_key: ClassVar[bool] = False  # FRAUDSLM_ENCRYPTION_KEY must be set
    keeps_value: ClassVar[bool] = False  # the value stays in clear (the gate then allows this type)

    def apply(self, replacer: "Replacer", entity_type: str, value: str, rule: "OperatorRule") -> str:
        raise NotImplementedError


OPERATORS: dict[str, Operator] = {}


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: make an operator available under `cls.name` in params.yaml."""
    if not cls.name:
        raise TypeError(f"{cls.__name__}: set `name`")
    OPERATORS[cls.name] = cls()
    return cls


def get_operator(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise ConfigError(f"unknown operator {name!r} (known: {', '.join(sorted(OPERATORS))})") from None


def operator_names() -> list[str]:
    return sorted(OPERATORS)


@register
class Pseudonymize(Operator):
    """Keyed HMAC token `<TYPE_0123456789ab>`: same value, same token, in every record, source and run."""

    name = "pseudonymize"

    def apply(self, replacer, entity_type, value, rule):
        return replacer.pseudonymizer.token(entity_type, value)


@register
class Redact(Operator):
    """`<TYPE>`: nothing of the value is left."""

    name = "redact"

    def apply(self, replacer, entity_type, value, rule):
        from pipeline.anonymize.pseudonym import redact

        return redact(entity_type)


@register
class Mask(Operator):
    """Every letter/digit but the last `keep_last` replaced by `masking_char`; separators kept."""

    name = "mask"

    def apply(self, replacer, entity_type, value, rule):
        from pipeline.anonymize.pseudonym import mask

        return mask(value, rule.keep_last, rule.masking_char)


@register
class Encrypt(Operator):
    """Deterministic AES-SIV `<TYPE~ciphertext>`, reversible with FRAUDSLM_ENCRYPTION_KEY."""

    name = "encrypt"
    needs_encryption_key = True

    def apply(self, replacer, entity_type, value, rule):
        assert replacer.encryptor is not None
        return replacer.encryptor.encrypt(entity_type, value)


@register
class Keep(Operator):
    """The value stays (e.g. URLs, which the fraud model needs); a known PII value inside it is still replaced."""

    name = "keep"
    keeps_value = True

    def apply(self, replacer, entity_type, value, rule):
        return value
