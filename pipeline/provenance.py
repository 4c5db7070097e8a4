"""Provenance in one place: git state, library versions and the `provenance.json` sidecar (pipeline.contracts.Provenance).

A stage writes `provenance.json` beside its outputs with `write_provenance`; the next stage reads it with
`read_provenance` from its own input folder (never by guessing another stage's folder).
"""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Optional

from pipeline.config import REPO_ROOT
from pipeline.contracts import PROVENANCE_FILE, Passport, Provenance, validate_metrics

LIBRARIES = (
    "fraudslm", "presidio-analyzer", "presidio-anonymizer", "spacy", "cleanlab", "scikit-learn", "numpy", "pandas",
    "pyarrow", "datasets", "transformers", "peft", "torch", "onnx", "onnxruntime", "dvc", "prefect", "jinja2",
    "matplotlib", "cryptography",
)


# what "the code" is: a commit that only records run outputs (dvc.lock, metrics.json, docs) does not change it, so
# artifacts that name the code version stay identical when a clone re-runs the pipeline at that later commit
CODE_PATHS = ("pipeline", "schemas", "flows", "params.yaml", "dvc.yaml", "pyproject.toml", "constraints.txt",
              "requirements-model.txt")


def git_info(root: Path = REPO_ROOT) -> dict[str, Any]:
    """{"git_sha", "git_dirty"} of the code: the last commit that changed CODE_PATHS, and whether tracked files under
    them differ from it; nulls outside a git checkout."""

    def _git(*args: str) -> Optional[str]:
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    sha = _git("log", "-1", "--format=%H", "--", *CODE_PATHS) or None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS) if sha else None
    return {"git_sha": sha, "git_dirty": None if status is None else bool(status)}


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, Optional[str]]:
    """{"python": version, library: version or None when not installed}."""
    out: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


PASSPORT_KEYS = ("passed", "key_fingerprint", "residual", "checked_records", "original_values_checked",
                 "canaries_checked")


def gate_passport(gate: dict[str, Any], sha256: Optional[str] = None) -> Passport:
    """The summary of the anonymize stage's gate.json that travels with the data (no values, counts only)."""
    doc = {k: gate[k] for k in PASSPORT_KEYS if k in gate}
    if sha256:
        doc["gate_sha256"] = sha256
    return Passport.model_validate(doc)


def write_provenance(out: str | Path, stage: str, gate: Optional[dict[str, Any] | Passport] = None,
                     **facts: Any) -> Provenance:
    """Write `provenance.json` into `out`: the gate passport, data version, params digest, the code's git SHA and
    the library versions. Deterministic for identical inputs at one commit (no dirty flag, no time), so DVC and
    git see no change on a rerun."""
    from pipeline.io import write_json

    git = {"git_sha": git_info()["git_sha"]}
    prov = Provenance(stage=stage, gate=gate, git=git, library_versions=library_versions(), **facts)
    write_json(Path(out) / PROVENANCE_FILE, prov.model_dump(mode="json", exclude_none=True))
    return prov


def read_provenance(folder: str | Path) -> Optional[Provenance]:
    """The `provenance.json` of a stage folder, None when absent; ConfigError when it breaks its contract."""
    from pipeline.io import read_json

    path = Path(folder) / PROVENANCE_FILE
    if not path.is_file():
        return None
    return validate_metrics(Provenance, read_json(path), path)


def require_passed_gate(folder: str | Path, consumer: str) -> Passport:
    """The gate passport recorded in `folder`/provenance.json; GateError (exit 1) unless it says passed: no record
    reaches `consumer` without a passed anonymize gate (fail closed)."""
    from pipeline.errors import ConfigError, GateError

    path = Path(folder) / PROVENANCE_FILE
    try:
        prov = read_provenance(folder)
    except (ConfigError, ValueError, OSError):
        raise GateError(f"{path}: unreadable provenance; {consumer} refuses data without a passed anonymize gate") \
            from None
    if prov is None:
        raise GateError(f"{path}: missing; cannot verify that the anonymize gate passed, {consumer} refuses the data")
    if prov.gate is None or prov.gate.passed is not True:
        raise GateError(f"{path}: the anonymize gate is not on record as passed; {consumer} refuses the data")
    return prov.gate
