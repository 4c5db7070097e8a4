"""`LearnedPiiRecognizer`: the learned NER as a Presidio recognizer, plus locating and fingerprinting its model.

One spaCy pass: the learned pipeline (`anonymize.pii_model`) is the NLP engine's model, so the entities it finds are
already in the `NlpArtifacts` every recognizer receives; this recognizer reports them (PERSON, STREET_ADDRESS,
LOCATION, ORGANIZATION, NRP, DATE_TIME after the registry's `nlp_engine` label mapping). The stock spaCy NER is not
run at all. Overlaps with the rule recognizers (checksummed identifiers, address patterns) are resolved the Presidio
way by score, and `detect.resolve_spans` keeps the union of the characters.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Optional

from pipeline.anonymize.offline import import_presidio
from pipeline.errors import ConfigError

import_presidio()
from presidio_analyzer.predefined_recognizers import SpacyRecognizer  # noqa: E402

MAKE_HINT = "build it with `make pii-model`"


class LearnedPiiRecognizer(SpacyRecognizer):
    """Entities of the learned PII NER (the NLP engine's model), Presidio's SpacyRecognizer contract."""

    ENTITIES = ["PERSON", "STREET_ADDRESS", "LOCATION", "ORGANIZATION", "NRP", "DATE_TIME"]
    DEFAULT_EXPLANATION = "Identified as {} by the learned PII NER (anonymize.pii_model)"

    def __init__(self, supported_language: str = "en", supported_entities: Optional[list[str]] = None,
                 ner_strength: float = 0.85, name: Optional[str] = None, **kwargs) -> None:
        super().__init__(supported_language=supported_language,
                         supported_entities=supported_entities or list(self.ENTITIES),
                         ner_strength=ner_strength, name=name or "LearnedPiiRecognizer")


def resolve_model_path(pii_model: Optional[str]) -> Optional[Path]:
    """The folder of `anonymize.pii_model` (relative paths: the working folder, else the code's repository), or
    None when not configured. A missing or incomplete folder is a one-line ConfigError naming it."""
    if not pii_model:
        return None
    p = Path(pii_model)
    if not p.is_absolute() and not p.exists():
        from pipeline.config import REPO_ROOT

        if (REPO_ROOT / p).exists():
            p = REPO_ROOT / p
    if not p.is_dir():
        raise ConfigError(f"anonymize.pii_model: learned PII model not found at {p} ({MAKE_HINT})")
    if not (p / "config.cfg").is_file() or not (p / "meta.json").is_file() or not (p / "ner").is_dir():
        raise ConfigError(f"anonymize.pii_model: {p} is not a spaCy pipeline with a 'ner' component ({MAKE_HINT})")
    return p


MODEL_FILES_SKIP = {"README.md", "training.json"}  # the model card and training record are not weights


def model_sha256(path: Path) -> str:
    """sha256 over the model folder's files (names + bytes), model card excluded."""
    h = hashlib.sha256()
    for p in sorted(Path(path).rglob("*")):
        if p.is_file() and p.name not in MODEL_FILES_SKIP and "__pycache__" not in p.parts:
            h.update(str(p.relative_to(path)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=8)
def _sha_cached(path: str, stamp: tuple) -> str:  # noqa: ARG001 - stamp invalidates the cache
    return model_sha256(Path(path))


def model_digest(pii_model: Optional[str]) -> Optional[str]:
    """sha256 of the learned model's files (None when not configured); cached per process by mtimes."""
    p = resolve_model_path(pii_model)
    if p is None:
        return None
    stamp = tuple(sorted((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in p.rglob("*") if f.is_file()))
    return _sha_cached(str(p.resolve()), stamp)
