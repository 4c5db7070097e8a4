"""Exceptions mapped to the CLI's exit codes (DESIGN.md: 0 done, 1 gate failed, 2 usage/config)."""


class FraudSLMError(Exception):
    """Base class. Messages must be one line and must never contain a PII value."""

    exit_code = 2


class ConfigError(FraudSLMError):
    """Usage or configuration problem: missing file, unknown kind, invalid config, missing key (exit 2)."""

    exit_code = 2


class GateError(FraudSLMError):
    """A gate failed: leakage, accounting, quality (exit 1)."""

    exit_code = 1
