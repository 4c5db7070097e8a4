"""Keep PII detection offline.

Presidio's e-mail recognizer validates domains with `tldextract.extract`, whose module-level extractor downloads the
public-suffix list on first use (and writes a cache under the home folder). `ensure_offline()` swaps that extractor
for one that reads only the snapshot bundled with tldextract, so building the detector and analysing text opens no
connection. spaCy models are loaded from installed packages only (no `spacy download` fallback, see detect.py).
"""

from __future__ import annotations

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
