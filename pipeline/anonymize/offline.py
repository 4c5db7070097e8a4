"""Keep PII detection offline.

Presidio's e-mail recognizer validates domains with `tldextract.extract`, whose module-level extractor downloads the
public-suffix list on first use (and writes a cache under the home folder). `ensure_offline()` swaps that extractor
for one that reads only the snapshot bundled with tldextract, so building the detector and analysing text opens no
connection. spaCy models are loaded from installed packages only (no `spacy download` fallback, see detect.py).
"""

from __future__ import annotations

import sys
import threading

_LOCK = threading.Lock()
_DONE = False


def offline_tld_extractor():
    """A TLDExtract that never fetches: no suffix-list URLs, no disk cache, bundled snapshot."""
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


def ensure_offline() -> None:
    """Idempotently patch the tldextract extractor used by Presidio (and anyone calling `tldextract.extract`)."""
    global _DONE
    if _DONE:
        return
    with _LOCK:
        if _DONE:
            return
        import tldextract.tldextract as tld_mod

        extractor = offline_tld_extractor()
        extractor("example.com")  # load the snapshot now, not on the first e-mail
        tld_mod.TLD_EXTRACTOR = extractor
        try:  # Presidio imports the package; `tldextract.extract` resolves TLD_EXTRACTOR at call time.
            from presidio_analyzer.predefined_recognizers.generic import email_recognizer

            email_recognizer.tldextract.tldextract.TLD_EXTRACTOR = extractor
        except (ImportError, AttributeError):  # pragma: no cover - layout of another Presidio version
            pass
        _DONE = True


def import_presidio() -> None:
    """Import Presidio's analyzer without its optional Hugging Face engine.

    `presidio_analyzer.nlp_engine` imports `transformers` (guarded by `try/except ImportError`) for its
    TransformersNlpEngine, which this project never uses: that import costs seconds of start-up per process. When
    nothing has imported transformers yet, it is hidden while Presidio loads and restored right after, so the
    training stage (same interpreter under Prefect) imports it normally.

    Presidio also probes for a CUDA device on import (`nlp_engine.device_detector`), which imports torch (seconds
    per process) unless `PRESIDIO_DEVICE` is set: the small spaCy model runs on the CPU here, so it is set to `cpu`
    when the environment does not choose (set PRESIDIO_DEVICE=cuda to let Presidio use a GPU)."""
    import os

    os.environ.setdefault("PRESIDIO_DEVICE", "cpu")
    if "presidio_analyzer.nlp_engine" in sys.modules or "transformers" in sys.modules:
        return
    # thinc (under spaCy) imports torch only to offer its PyTorch shims, which a CPU spaCy pipeline without a
    # transformer component never calls: hidden likewise when nothing has imported thinc or torch yet (torch itself
    # imports normally afterwards; only thinc's optional shims stay off in this process)
    hide = ["transformers"] + (["torch"] if "thinc" not in sys.modules and "torch" not in sys.modules
                               and os.environ.get("FRAUDSLM_THINC_TORCH", "") != "1" else [])
    with _LOCK:
        for name in hide:
            sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
        try:
            import presidio_analyzer.nlp_engine  # noqa: F401
            import presidio_analyzer.predefined_recognizers  # noqa: F401
        finally:
            for name in hide:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
