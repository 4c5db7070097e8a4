"""Anonymize free texts the way the anonymize stage anonymizes a record's text, for `fraudslm predict`.

Same detector (`build_detector(params.anonymize)`: Presidio + spaCy + the finance recognizers of the registry), same
operator policy (`anonymize.operators`, `Replacer`), same key (`FRAUDSLM_PSEUDONYM_KEY`), the same batch dictionary
sweep (a value detected in one text of the batch is replaced in every text of it) and the same leakage gate on each
output. Fail closed: a text whose detection or replacement throws, or whose output the gate still finds PII in, comes
back as None with a reason (no value in it) and must not be scored.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator, Optional

from pipeline.errors import FraudSLMError


def settings_digest(anon_params) -> dict[str, Any]:
    """What must match between training and scoring: the anonymize section (detector, entities, operators, registry),
    the registry file's content and the learned PII model's files. Returns {"settings", "registry_sha256",
    "pii_model_sha256", "digest"}."""
    settings = anon_params.model_dump(mode="json")
    reg = Path(anon_params.registry)
    if not reg.is_absolute() and not reg.exists():
        from pipeline.config import REPO_ROOT

        reg = REPO_ROOT / reg
    reg_sha = hashlib.sha256(reg.read_bytes()).hexdigest() if reg.is_file() else None
    from pipeline.anonymize.learned.recognizer import model_digest

    model_sha = model_digest(getattr(anon_params, "pii_model", None))  # the learned detector's weights
    blob = json.dumps({"settings": settings, "registry_sha256": reg_sha, "pii_model_sha256": model_sha},
                      sort_keys=True).encode()
    return {"settings": settings, "registry_sha256": reg_sha, "pii_model_sha256": model_sha,
            "digest": hashlib.sha256(blob).hexdigest()}


@contextlib.contextmanager
def torch_hidden() -> Iterator[None]:
    """spaCy's thinc (and transformers, through presidio) import torch when it is installed; an ONNX / sklearn
    scorer needs none of it. While building the detector in a process that has not imported torch, make `import
    torch` fail so those libraries take their torch-less path (they all support it). No effect once torch is in."""
    if "torch" in sys.modules:
        yield
        return
    old_verbosity = os.environ.get("TRANSFORMERS_VERBOSITY")
    os.environ["TRANSFORMERS_VERBOSITY"] = "error"  # "PyTorch was not found" is expected here
    sys.modules["torch"] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        if sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
        if old_verbosity is None:
            os.environ.pop("TRANSFORMERS_VERBOSITY", None)
        else:
            os.environ["TRANSFORMERS_VERBOSITY"] = old_verbosity


class TextAnonymizer:
    """`anonymize(texts) -> [(anonymized text or None, reason or None)]`, in input order."""

    def __init__(self, anon_params, key: Optional[bytes] = None, without_torch: bool = False) -> None:
        from pipeline.anonymize.detect import build_detector
        from pipeline.anonymize.pseudonym import Pseudonymizer, Replacer, load_encryptor, load_key, rules_from_params

        key = load_key() if key is None else key
        rules, default_rule = rules_from_params(anon_params.operators, anon_params.default_operator)
        needs_enc = any(r.operator == "encrypt" for r in [default_rule, *rules.values()])
        pseudonymizer = Pseudonymizer(key)
        del key
        self.key_fingerprint = pseudonymizer.fingerprint
        self.replacer = Replacer(rules, default_rule, pseudonymizer, load_encryptor(required=needs_enc))
        self.keep_types = frozenset(t for t, r in rules.items() if r.operator == "keep")
        self.min_score = float(anon_params.gate.min_score)
        with torch_hidden() if without_torch else contextlib.nullcontext():
            self.detector = build_detector(anon_params)

    def _spans(self, texts: list[str]) -> list[Optional[list]]:
        try:
            res = self.detector.detect_batch(texts, ner=True)
            if len(res) == len(texts):
                return res
        except FraudSLMError:
            raise
        except Exception:  # noqa: BLE001 - isolate the failing text(s) below
            pass
        out: list[Optional[list]] = []
        for t in texts:
            try:
                out.append(self.detector.detect_batch([t], ner=True)[0])
            except FraudSLMError:
                raise
            except Exception:  # noqa: BLE001 - fail closed: this text is not scored
                out.append(None)
        return out

    def anonymize(self, texts: list[str]) -> list[tuple[Optional[str], Optional[str]]]:
        from pipeline.anonymize.gate import LeakageGate, ValueMatcher

        from pipeline.anonymize.replace import SweepCandidates, collect_detected

        spans = self._spans(texts)
        dictionary = ValueMatcher()
        candidates = SweepCandidates()  # as the stage: free-text values are swept only where the detector agrees
        collect_detected(dictionary, [(texts, [[(s.type, s.start, s.end, s.score, "") for s in ss] if ss else ss
                                                for ss in spans])], set(self.keep_types), candidates)
        candidates.count(texts)
        candidates.commit(dictionary)
        gate = LeakageGate(self.min_score, originals=dictionary, allowed_types=self.keep_types)
        out: list[tuple[Optional[str], Optional[str]]] = []
        for i, (t, ss) in enumerate(zip(texts, spans)):
            if ss is None:
                out.append((None, "detect_failed"))
                continue
            try:
                new = self._replace(t, [(s.type, int(s.start), int(s.end)) for s in ss], dictionary)
            except FraudSLMError:
                raise
            except Exception as exc:  # noqa: BLE001 - fail closed, no message (could hold a value)
                out.append((None, f"anonymize_failed:{type(exc).__name__}"))
                continue
            if gate.scan_record(str(i), [("text", new, True)]):
                out.append((None, "residual_pii"))
                continue
            out.append((new, None))
        return out

    def _replace(self, text: str, spans: list[tuple[str, int, int]], dictionary) -> str:
        extra = [(typ, s, e) for s, e, typ in dictionary.find(text)]
        if extra and self.replacer.keeps:  # a kept span (URL) never shields a known PII value inside it
            spans = [x for x in spans if x[0] not in self.replacer.keeps
                     or not any(y[1] < x[2] and x[1] < y[2] for y in extra)]
        merged: list[tuple[str, int, int]] = []
        for typ, s, e in sorted(spans + extra, key=lambda x: (x[1], -x[2])):
            if merged and s < merged[-1][2]:
                if e > merged[-1][2]:
                    merged[-1] = (merged[-1][0], merged[-1][1], e)
                continue
            merged.append((typ, s, e))
        parts, pos = [], 0
        for typ, s, e in merged:
            parts.append(text[pos:s])
            parts.append(self.replacer.replace(typ, text[s:e])[0])
            pos = e
        parts.append(text[pos:])
        return "".join(parts)


def anonymize_texts(texts: list[str], anon_params, key: Optional[bytes] = None
                    ) -> list[tuple[Optional[str], Optional[str]]]:
    """One-shot helper: build a TextAnonymizer and anonymize `texts` (see the module doc)."""
    return TextAnonymizer(anon_params, key).anonymize(texts)
