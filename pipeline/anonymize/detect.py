"""PII detection: a Presidio `AnalyzerEngine` built from `schemas/recognizers.yaml` + a spaCy model, batched.

Interface (pipeline/anonymize/README.md): `Span`, `Detector.detect_batch`, `build_detector`, `detect_pii_file`.

Learned NER (issue 20): with `anonymize.pii_model` set, the learned PII pipeline (pipeline/anonymize/learned) is the
NLP engine's only model and `LearnedPiiRecognizer` reports its entities: one spaCy pass, the stock NER never runs.

Speed: each distinct text is analysed once per batch; spaCy runs through `nlp.pipe` with only the NER component
(and whatever it listens to) enabled; with the stock model (no pii_model), texts with no upper-case letter skip NER
(it finds no entity in them) and are only tokenized (the learned model also reads lower-case names); regex
recognizers skip texts that lack their trigger characters; thinc's matrix products run on numpy's BLAS (one
thread), not the blis wheel's generic kernel (`_spacy_load`). Texts longer than
`anonymize.max_chunk_chars` are analysed in overlapping chunks, so a 1 MB field neither hits spaCy's length limit
nor holds the whole parse in memory.

Offline: tldextract uses its bundled suffix-list snapshot (offline.py) and a missing spaCy model is a
configuration error, never a download.
"""

from __future__ import annotations

import bisect
import json
import logging
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from presidio_analyzer import RecognizerResult

    from pipeline.config import AnonymizeParams, Params

log = logging.getLogger(__name__)

_SURROGATE = re.compile("[\ud800-\udfff]")



_NER_RECOGNIZERS = frozenset({"LearnedPiiRecognizer", "SpacyRecognizer"})


@dataclass(frozen=True)
class Span:
    type: str  # Presidio entity name, e.g. CREDIT_CARD
    start: int
    end: int
    score: float
    recognizer: str


# --------------------------------------------------------------------------------------------- resolution
def resolve_spans(cands: Iterable[Span], threshold: float = 0.0, text: Optional[str] = None) -> list[Span]:
    """Non-overlapping spans, sorted by position.

    Candidates below `threshold` are dropped. The rest are taken greedily by (score, length): the highest score
    wins a contested character, ties go to a rule recognizer over the NER (a rule span inside an NER span ranks with
    it), then to the longer span. A losing span is not thrown away: the parts of it that no winner covers are kept
    (with the loser's type and score), so the union of detected characters never shrinks when recognizers disagree
    on boundaries (privacy first: "12 <PERSON> Street" must not leave "Street" behind).
    Left-over pieces without a letter or digit (", ") are dropped.
    """
    cands = [c for c in cands if c.score >= threshold and c.end > c.start]
    if not cands:
        return []
    # at equal score a rule (pattern / checksum) span beats an NER span: "BIC: DEUTDEFF" is a SWIFT code even when
    # the NER calls the all-capitals word a PERSON; and a rule span inside an NER span ranks with it ("appelez le
    # 01 23 45 67 89" tagged as one address keeps its phone number). The NER span's other parts are still kept.
    cands = list(set(cands))
    ner = [c for c in cands if c.recognizer in _NER_RECOGNIZERS]
    rank: dict[Span, float] = {}
    for c in cands:
        r = c.score
        if ner and c.recognizer not in _NER_RECOGNIZERS:
            r = max([r] + [n.score for n in ner if n.start <= c.start and c.end <= n.end])
        rank[c] = r
    order = sorted(cands, key=lambda s: (-rank[s], s.recognizer in _NER_RECOGNIZERS, -(s.end - s.start), s.start,
                                         s.type, s.recognizer))
    taken: list[tuple[int, int]] = []  # sorted disjoint intervals
    out: list[Span] = []
    for c in order:
        # free sub-intervals of [c.start, c.end) given taken intervals
        pieces: list[tuple[int, int]] = []
        cur = c.start
        i = bisect.bisect_right(taken, (c.start, float("inf"))) - 1
        i = max(i, 0)
        while i < len(taken) and taken[i][0] < c.end:
            s, e = taken[i]
            if e <= cur:
                i += 1
                continue
            if s > cur:
                pieces.append((cur, min(s, c.end)))
            cur = max(cur, e)
            if cur >= c.end:
                break
            i += 1
        if cur < c.end:
            pieces.append((cur, c.end))
        full = len(pieces) == 1 and pieces[0] == (c.start, c.end)
        for s, e in pieces:
            if not full and text is not None:
                s, e = _trim(text, s, e)
            if not full and (not any(ch.isalnum() for ch in text[s:e]) if text is not None else (e - s) < 2):
                continue
            out.append(Span(c.type, s, e, c.score, c.recognizer))
            bisect.insort(taken, (s, e))
    out.sort(key=lambda s: (s.start, s.end))
    if text is not None:  # "Odile" + "Marchetti" from two recognizers: one name, one placeholder
        joined: list[Span] = []
        for sp in out:
            p = joined[-1] if joined else None
            if p is not None and p.type == sp.type and sp.type in _JOIN_TYPES and sp.start - p.end <= 1 \
                    and text[p.end:sp.start] in ("", " "):
                joined[-1] = Span(p.type, p.start, sp.end, max(p.score, sp.score), p.recognizer)
            else:
                joined.append(sp)
        out = joined
    return out


_JOIN_TYPES = frozenset({"PERSON", "STREET_ADDRESS"})


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# ------------------------------------------------------------------------------------------------- engine
def _spacy_load(name: str, **kwargs):
    """`spacy.load`, with thinc's matrix products on numpy's BLAS where thinc would use the `blis` wheel's.

    The NER's cost is almost all matrix products (tok2vec and the parser's lower layer). The `blis` wheel ships a
    generic kernel on CPUs it has no sub-configuration for (it selects 'generic' on this machine's AMD EPYC, at
    about a third of numpy's OpenBLAS speed), so thinc's default `NumpyOps(use_blis=True)` leaves most of the
    speed unused. Same model, same arithmetic up to float rounding (measured: identical entities on the demo's
    2,899 texts, 24% less NER time; docs/stages.md). Other backends (Apple, GPU) are left as they are."""
    import spacy
    from thinc.api import NumpyOps, get_current_ops, use_ops

    ops = get_current_ops()
    if type(ops) is NumpyOps and getattr(ops, "use_blis", False):
        with use_ops("numpy", use_blis=False):
            return spacy.load(name, **kwargs)
    return spacy.load(name, **kwargs)


def _one_blas_thread():
    """numpy's BLAS at one thread while spaCy runs: its matrices are small and a second thread costs more than it
    gives (measured 15% slower on 2 cores), and the stage's workers are processes already."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _spacy_engine_cls():
    from pipeline.anonymize.offline import import_presidio

    import_presidio()
    from presidio_analyzer.nlp_engine import NlpArtifacts, SpacyNlpEngine

    class NerOnlySpacyEngine(SpacyNlpEngine):
        """Presidio's spaCy engine with only NER (and the components it listens to) enabled.

        Without a lemmatizer, lemmas are the lower-cased tokens: Presidio's context enhancer matches context words
        as substrings, so "accounts" still supports "account".
        """

        def __init__(self, model_name: str, ner_model_configuration=None, ignore_terms: Iterable[str] = (),
                     ignore_patterns: Iterable[str] = (), must_match: Optional[dict[str, str]] = None,
                     learned_path: Optional[Path] = None) -> None:
            import regex

            super().__init__(models=[{"lang_code": "en", "model_name": model_name}],
                             ner_model_configuration=ner_model_configuration)
            self.model_name = model_name
            self.learned_path = learned_path
            self.ignore_terms = frozenset(t.lower() for t in ignore_terms)
            pats = list(ignore_patterns)
            self.ignore_rx = regex.compile("|".join(f"(?:{p})" for p in pats)) if pats else None
            self.must_match = {k: regex.compile(v) for k, v in (must_match or {}).items()}

        def load(self) -> None:
            import spacy

            if self.learned_path is not None:
                path = str(self.learned_path)
                try:
                    nlp = _spacy_load(path, exclude=_unneeded_pipes(path))
                except Exception as exc:  # noqa: BLE001 - a broken model folder is a configuration problem
                    raise ConfigError(f"anonymize.pii_model: cannot load the learned PII model at {path} "
                                      f"({type(exc).__name__}); rebuild it with `make pii-model`") from None
                if "ner" not in nlp.pipe_names:
                    raise ConfigError(f"anonymize.pii_model: {path} has no 'ner' component; rebuild it with "
                                      f"`make pii-model`")
                nlp.max_length = max(nlp.max_length, 2_000_000)
                self.nlp = {"en": nlp}
                return
            name = self.model_name
            if not (spacy.util.is_package(name) or Path(name).exists()):
                raise ConfigError(
                    f"anonymize.spacy_model: spaCy model {name!r} is not installed (no download at run time; "
                    f"install the package or point to a model folder)")
            try:
                exclude = _unneeded_pipes(name)
                nlp = _spacy_load(name, exclude=exclude)
            except Exception as exc:  # noqa: BLE001 - a broken model is a configuration problem
                raise ConfigError(f"anonymize.spacy_model: cannot load {name!r} ({type(exc).__name__})") from None
            if "ner" not in nlp.pipe_names:
                raise ConfigError(f"anonymize.spacy_model: {name!r} has no 'ner' component")
            nlp.max_length = max(nlp.max_length, 2_000_000)
            self.nlp = {"en": nlp}

        def _get_updated_entities(self, entities, scores):
            entities, scores = super()._get_updated_entities(entities, scores)
            if not entities or (not self.ignore_terms and self.ignore_rx is None and not self.must_match):
                return entities, scores
            keep_e, keep_s = [], []
            for ent, score in zip(entities, scores):
                if ent.label_ in ("PERSON", "PER"):
                    ent = _trim_person(ent)
                    if ent is None:
                        continue
                elif ent.label_ == "STREET_ADDRESS":
                    ent = _trim_address(ent, self.ignore_terms)
                    if ent is None:
                        continue
                t = ent.text.strip()
                if t.lower() in self.ignore_terms or (self.ignore_rx is not None and self.ignore_rx.fullmatch(t)):
                    continue
                rx = self.must_match.get(ent.label_)
                if rx is not None and not rx.search(t):
                    continue
                keep_e.append(ent)
                keep_s.append(score)
            return keep_e, keep_s

        def _doc_to_nlp_artifact(self, doc, language: str):
            entities = self._get_entities(doc)
            scores = self._get_scores_for_entities(doc)
            entities, scores = self._get_updated_entities(entities, scores)
            return LazyNlpArtifacts(doc, list(entities), scores, self, language)

    def _trim_person(ent):
        """A spaCy PERSON cut to what can be a name: it stops at a line break ("Anna Berg\\nMain Street") and does
        not end in a lower-case word ("Ryanair ref"); a short all-capitals token ("ABA", "KYC") is an acronym."""
        from spacy.tokens import Span as SpacySpan

        end = ent.end
        for tok in ent:
            if "\n" in tok.text:
                end = tok.i
                break
        all_lower = all(not t.is_alpha or t.is_lower for t in ent.doc[ent.start:end])  # "spoke to anna berg"
        while not all_lower and end > ent.start + 1 and ent.doc[end - 1].is_lower:
            end -= 1
        while end > ent.start + 1 and ent.doc[end - 1].lower_.rstrip(".") in _UNIT_WORDS:
            end -= 1  # "Mr. Tomas Lind Apt. 7": the secondary unit belongs to the address
        if end <= ent.start:
            return None
        if end - ent.start == 1 and ent.doc[ent.start].is_upper and len(ent.doc[ent.start]) <= 4:
            return None
        if end == ent.end:
            end = _extend_over_particles(ent.doc, ent.start, end, all_lower)
        if end == ent.end:
            return ent
        return SpacySpan(ent.doc, ent.start, end, label=ent.label_)

    def _extend_over_particles(doc, start: int, end: int, all_lower: bool) -> int:
        """A name does not stop at a surname particle: the NER's "Alistair Mac", "amanda ó" and "Jan van" (of
        "Alistair Mac an Bhreitheamhain Ó Rághaill", "amanda ó guillí", "Jan van der Berg") run on over the particles
        and the name word after them. In mixed-case text that word must be capitalised; in a lower-case name, any
        lower-case word that is not a service word, and only after particles that are not also chat words ("da",
        "den", "de", "la" are "the", "then", ... in texting: "dun haf da book")."""
        particles = _PARTICLES_LOWER if all_lower else _PARTICLES

        def particle(i: int) -> bool:
            low = doc[i].lower_
            return low in particles or (low == "an" and i > start and doc[i - 1].lower_ in ("mac", "mhic"))

        def name_word(tok) -> bool:
            if not tok.is_alpha or tok.lower_ in _NOT_NAMES:
                return False
            return tok.is_lower if all_lower else (tok.is_title or tok.is_upper)

        for _ in range(3):
            ends_in_particle = end - start >= 2 and particle(end - 1)
            j = end
            while j < len(doc) and j - end < 2 and particle(j) and doc[j - 1].whitespace_ == " ":
                j += 1
            if (j > end or ends_in_particle) and j < len(doc) and doc[j - 1].whitespace_ == " " \
                    and name_word(doc[j]):
                end = j + 1
                continue
            break
        return end

    from pipeline.anonymize.recognizers import NOT_NAMES as _NOT_NAMES, SURNAME_PARTICLES

    # the cue rules' particles ("y" is "and" there, not a particle a name ends in) and Gaelic / Arabic ones
    _PARTICLES = frozenset(SURNAME_PARTICLES) - {"y"} | frozenset("ó ní nic uí ua mac mhic bint abu".split())
    _PARTICLES_LOWER = frozenset("ó ní nic uí ua mac mhic van von bin ibn bint abu".split())  # not chat words

    from pipeline.anonymize.recognizers import UNIT_WORDS

    _UNIT_WORDS = frozenset(w.lower() for w in UNIT_WORDS)

    def _trim_address(ent, ignore_terms):
        """A learned STREET_ADDRESS cut to the address: it ends before a finance word ("..., IBAN DE89...", one of
        the registry's ignore_terms) and loses leading / trailing punctuation. (A cut at sentence stops was tried
        and lost abbreviated addresses: "29 castle rd., erkelenz".)"""
        from spacy.tokens import Span as SpacySpan

        doc, start, end = ent.doc, ent.start, ent.end
        for tok in ent:  # a finance word ("IBAN", "phone", "email") ends the address
            if tok.i > start and (tok.is_alpha and tok.lower_ in ignore_terms or tok.like_url or tok.like_email):
                end = tok.i
                break
        while start < end and (doc[start].is_punct or doc[start].is_space):
            start += 1
        while end > start and (doc[end - 1].is_punct and doc[end - 1].text not in (")",) or doc[end - 1].is_space
                               or doc[end - 1].lower_ in ignore_terms):
            end -= 1
        if end <= start or not any(t.like_num or t.is_alpha for t in doc[start:end]):
            return None
        if end - start == 1 and (doc[start].is_lower or doc[start].like_url or doc[start].like_email):
            return None  # "visit" left of a URL
        if (start, end) == (ent.start, ent.end):
            return ent
        return SpacySpan(doc, start, end, label=ent.label_)

    class LazyNlpArtifacts(NlpArtifacts):
        """NlpArtifacts whose token lists and keywords are built only when a context enhancer asks for them
        (most texts have no result that needs context). Keywords use the doc's own lexeme flags instead of a
        vocabulary lookup per lemma."""

        def __init__(self, doc, entities, scores, engine, language: str) -> None:  # noqa: D107 - no super().__init__
            self.entities = entities
            self.tokens = doc
            self.nlp_engine = engine
            self.language = language
            self.scores = scores if scores else [0.85] * len(entities)
            self._lemmas = self._indices = self._keywords = None

        @property
        def lemmas(self):
            if self._lemmas is None:
                self._lemmas = [t.lower_ for t in self.tokens]
            return self._lemmas

        @lemmas.setter
        def lemmas(self, value):
            self._lemmas = value

        @property
        def tokens_indices(self):
            if self._indices is None:
                self._indices = [t.idx for t in self.tokens]
            return self._indices

        @tokens_indices.setter
        def tokens_indices(self, value):
            self._indices = value

        @property
        def keywords(self):
            if self._keywords is None:
                kw = [t.lower_ for t in self.tokens if not (t.is_stop or t.is_punct) and t.lower_ != "be"]
                self._keywords = [part for k in kw for part in k.split(":")]
            return self._keywords

        @keywords.setter
        def keywords(self, value):
            self._keywords = value

    return NerOnlySpacyEngine


def _unneeded_pipes(name: str) -> list[str]:
    """Components of an installed/folder spaCy pipeline that NER does not need (read from its config.cfg)."""
    import spacy

    path = Path(name) if Path(name).exists() else spacy.util.get_package_path(name)
    cfg_files = [path / "config.cfg"] if (path / "config.cfg").exists() else sorted(path.glob("*/config.cfg"))
    if not cfg_files:
        return []
    cfg = spacy.util.load_config(cfg_files[0], interpolate=False)
    pipeline = list(cfg["nlp"]["pipeline"])
    keep = {"ner", "entity_ruler", "span_ruler"}
    tok2vec = cfg["components"].get("ner", {}).get("model", {}).get("tok2vec", {})
    if "Listener" in str(tok2vec.get("@architectures", "")):
        upstream = tok2vec.get("upstream", "*")
        keep |= {"tok2vec", "transformer"} if upstream == "*" else {upstream}
    return [p for p in pipeline if p not in keep]


def _load_registry_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    import yaml

    if not path.exists():
        raise ConfigError(f"{path}: recognizer registry not found (anonymize.registry)")
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("recognizers"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'recognizers' list")
    nlp_cfg = cfg.pop("nlp_engine", None) or {}
    cfg.setdefault("supported_languages", ["en"])
    cfg.setdefault("global_regex_flags", 26)
    return cfg, nlp_cfg


class Detector:
    """Presidio analyzer + finance recognizers; `detect_batch` is the fast path used by the anonymize stage.

    Construct one per process (`build_detector(params)`); it is cheap to rebuild in each worker (~1-2 s, mostly
    the spaCy load) and holds no state between batches.
    """

    def __init__(self, params: "AnonymizeParams", entities: Optional[Iterable[str]] = None,
                 registry_path: Optional[Path] = None) -> None:
        from pipeline.anonymize.offline import import_presidio

        import_presidio()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
        from presidio_analyzer.nlp_engine import NerModelConfiguration
        from presidio_analyzer.recognizer_registry import RecognizerRegistryProvider

        from pipeline.anonymize import recognizers as _recognizers  # noqa: F401 - registers the classes
        from pipeline.anonymize.learned import recognizer as _learned  # noqa: F401 - LearnedPiiRecognizer
        from pipeline.anonymize.offline import ensure_offline

        ensure_offline()
        self.params = params
        self.threshold = float(params.score_threshold)
        self.batch_size = int(getattr(params, "batch_size", 256))
        self.max_chunk = int(getattr(params, "max_chunk_chars", 100_000))
        self.entities: list[str] = sorted(set(entities if entities is not None else params.entities))
        path = Path(registry_path or params.registry)
        if not path.is_absolute() and not path.exists():
            from pipeline.config import REPO_ROOT

            if (REPO_ROOT / path).exists():  # run from another folder: the registry that ships with the code
                path = REPO_ROOT / path
        cfg, nlp_cfg = _load_registry_config(path)
        ignore_terms = nlp_cfg.pop("ignore_terms", None) or []
        ignore_patterns = nlp_cfg.pop("ignore_patterns", None) or []
        must_match = nlp_cfg.pop("entity_must_match", None) or {}
        from pipeline.anonymize.learned.recognizer import resolve_model_path

        self.learned_path = resolve_model_path(getattr(params, "pii_model", None))
        try:
            ner_conf = NerModelConfiguration.from_dict(nlp_cfg) if nlp_cfg else NerModelConfiguration()
            self.engine = _spacy_engine_cls()(params.spacy_model, ner_conf, ignore_terms, ignore_patterns, must_match,
                                              learned_path=self.learned_path)
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - pydantic / regex error, one line
            raise ConfigError(f"{path}: nlp_engine: {' '.join(str(exc).split())[:200]}") from None
        self.engine.load()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                # nlp_engine=None: Presidio would insist on its own SpacyRecognizer class for a spaCy engine; the
                # registry lists LearnedPiiRecognizer (a SpacyRecognizer subclass) reading the same NlpArtifacts
                registry = RecognizerRegistryProvider(
                    registry_configuration=cfg, nlp_engine=None).create_recognizer_registry()
            except (ValueError, TypeError) as exc:
                cause = exc.__cause__ or exc
                raise ConfigError(f"{path}: invalid recognizer registry ({' '.join(str(cause).split())[:300]})") from None
        self.analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=self.engine,
            supported_languages=["en"],
            default_score_threshold=self.threshold,
            context_aware_enhancer=LemmaContextAwareEnhancer(context_prefix_count=6, context_suffix_count=1),
        )
        self._registry_path = path
        self._nlp = self.engine.nlp["en"]
        self._set_entities(self.entities)

    def _set_entities(self, entities: list[str]) -> None:
        supported = set(self.analyzer.get_supported_entities("en"))
        unknown = [e for e in entities if e not in supported]
        if unknown:
            raise ConfigError(f"anonymize.entities: no recognizer in {self._registry_path} reports {', '.join(unknown)}")
        self.entities = sorted(set(entities))
        self._ctx_plans: dict = {}
        self._recognizers_ner = self._select(self.entities)
        self._recognizers_regex = [r for r in self._recognizers_ner if not _is_ner_recognizer(r)]

    def for_entities(self, entities: Iterable[str]) -> "Detector":
        """A detector for another entity set sharing this one's spaCy model and recognizers (no reload)."""
        import copy

        other = copy.copy(self)
        other._set_entities(list(entities))
        return other

    # ------------------------------------------------------------------ internals
    def _select(self, entities: list[str]) -> list:
        recs = self.analyzer.registry.get_recognizers(language="en", entities=entities, all_fields=False)
        for r in recs:
            if not r.is_loaded:
                r.load()
                r.is_loaded = True
        return recs

    def _analyze(self, text: str, doc, recognizers: list) -> list["RecognizerResult"]:
        """`AnalyzerEngine.analyze` minus its per-call registry lookups: same recognizers, same context enhancement,
        same score thresholding."""
        from presidio_analyzer import RecognizerResult as RR

        artifacts = self.engine._doc_to_nlp_artifact(doc, "en")
        results: list = []
        ents = self.entities
        for rec in recognizers:
            found = rec.analyze(text=text, entities=ents, nlp_artifacts=artifacts)
            if found:
                for r in found:
                    md = r.recognition_metadata
                    if md is None:
                        r.recognition_metadata = md = {}
                    md.setdefault(RR.RECOGNIZER_IDENTIFIER_KEY, rec.id)
                    md.setdefault(RR.RECOGNIZER_NAME_KEY, rec.name)
                results.extend(found)
        if not results:
            return results
        needs_ctx = [r for r in results if not r.recognition_metadata.get(RR.IS_SCORE_ENHANCED_BY_CONTEXT_KEY)]
        if needs_ctx:
            done = [r for r in results if r.recognition_metadata.get(RR.IS_SCORE_ENHANCED_BY_CONTEXT_KEY)]
            needs_ctx = self._enhance(text, needs_ctx, artifacts, recognizers)
            results = done + needs_ctx
        return [r for r in results if r.entity_type in ents and r.score >= self.threshold]

    def _enhance(self, text: str, results: list, artifacts, recognizers: list) -> list:
        """Presidio's context enhancement (`AnalyzerEngine._enhance_using_context`), same result and order, without
        its cost for results whose recognizer has no context words: Presidio groups the results by recognizer (in
        `recognizers` order), then deep-copies every result and looks up the lemmas around each one, only to skip
        those. When no recognizer overrides the recognizer-level hook, the grouping is done here and only the
        results whose recognizer has context words go through the lemma enhancer."""
        from presidio_analyzer import EntityRecognizer
        from presidio_analyzer import RecognizerResult as RR

        key = tuple(r.id for r in recognizers)
        plan = self._ctx_plans.get(key)
        if plan is None:
            custom = any(type(r).enhance_using_context is not EntityRecognizer.enhance_using_context
                         for r in recognizers)
            plan = None if custom else ({rid: i for i, rid in enumerate(key)},
                                        {r.id for r in recognizers if r.context})
            self._ctx_plans[key] = plan or False
        if not plan:  # a recognizer with its own hook: Presidio's path as is
            return self.analyzer._enhance_using_context(text, results, artifacts, recognizers, None)
        order, with_ctx = plan
        idk = RR.RECOGNIZER_IDENTIFIER_KEY
        grouped = sorted((r for r in results if r.recognition_metadata[idk] in order),
                         key=lambda r: order[r.recognition_metadata[idk]])  # stable: Presidio's order
        todo = [r for r in grouped if r.recognition_metadata[idk] in with_ctx]
        if not todo:
            return grouped
        enhanced = iter(self.analyzer.context_aware_enhancer.enhance_using_context(
            text=text, raw_results=todo, nlp_artifacts=artifacts, recognizers=recognizers, context=None))
        return [next(enhanced) if r.recognition_metadata[idk] in with_ctx else r for r in grouped]

    def _chunks(self, text: str) -> list[tuple[int, str]]:
        n, size = len(text), self.max_chunk
        if n <= size:
            return [(0, text)]
        overlap = min(2000, size // 10)
        out, start = [], 0
        while start < n:
            end = min(n, start + size)
            if end < n:  # cut at whitespace so no token is split
                cut = text.rfind(" ", start + size // 2, end)
                cut = max(cut, text.rfind("\n", start + size // 2, end))
                if cut > start:
                    end = cut
            out.append((start, text[start:end]))
            if end >= n:
                break
            start = max(end - overlap, start + 1)
        return out

    # ------------------------------------------------------------------ API
    def detect_batch(self, texts: list[str], ner: bool = True) -> list[list[Span]]:
        """Resolved (non-overlapping, sorted) spans per text; each distinct text analysed once.

        `ner=False` runs the pattern recognizers only (for fields that cannot hold names or places).
        """
        if not texts:
            return []
        uniq: dict[str, None] = {}
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"detect_batch expects str, got {type(t).__name__}")
            uniq.setdefault(t, None)
        units: list[tuple[str, int, str]] = []  # (text, offset, chunk)
        for t in uniq:
            if t:
                # lone surrogates (undecodable bytes smuggled through) break spaCy: same-length replacement
                clean = _SURROGATE.sub("\ufffd", t) if _SURROGATE.search(t) else t
                units.extend((t, off, chunk) for off, chunk in self._chunks(clean))
        recognizers = self._recognizers_ner if ner else self._recognizers_regex
        nlp = self._nlp
        # stock model: NER only for chunks with an upper-case letter (it tags no entity in all-lower-case text);
        # the learned model reads lower-case names too
        learned = self.learned_path is not None
        ner_idx = [i for i, u in enumerate(units) if ner and (learned or _has_upper(u[2]))]
        docs: list[Any] = [None] * len(units)
        if ner_idx:
            with _one_blas_thread():
                for i, doc in zip(ner_idx, nlp.pipe((units[i][2] for i in ner_idx), batch_size=self.batch_size)):
                    docs[i] = doc
        found: dict[str, list[Span]] = {t: [] for t in uniq}
        for i, (t, off, chunk) in enumerate(units):
            doc = docs[i] if docs[i] is not None else nlp.make_doc(chunk)
            docs[i] = None
            for r in self._analyze(chunk, doc, recognizers):
                s, e = _trim(chunk, r.start, r.end)
                if e > s:
                    name = (r.recognition_metadata or {}).get("recognizer_name", "")
                    found[t].append(Span(r.entity_type, s + off, e + off, round(float(r.score), 4), name))
        resolved = {t: resolve_spans(c, self.threshold, t) for t, c in found.items()}
        return [resolved[t] for t in texts]

    def detect(self, text: str, ner: bool = True) -> list[Span]:
        return self.detect_batch([text], ner=ner)[0]


def _is_ner_recognizer(rec) -> bool:
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    return isinstance(rec, SpacyRecognizer)


def _has_upper(text: str) -> bool:
    return not text.islower() and any(ch.isupper() for ch in text)


def build_detector(params: "AnonymizeParams", entities: Optional[Iterable[str]] = None) -> Detector:
    """The detector for the anonymize stage (params.entities) or, with `entities`, another entity set."""
    return Detector(params, entities=entities)


# ------------------------------------------------------------------------------------------ detect-pii
def _iter_jsonl(path: Path) -> Iterator[tuple[int, Optional[str], Optional[str], Optional[str]]]:
    """(line number, id, text, error) per non-blank line; bad lines carry an error and no text."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield lineno, None, None, "not UTF-8"
                continue
            except json.JSONDecodeError as exc:
                yield lineno, None, None, f"invalid JSON ({exc.msg} at column {exc.colno})"
                continue
            if not isinstance(obj, dict):
                yield lineno, None, None, "expected a JSON object"
                continue
            rid = obj.get("id")
            if rid is None or isinstance(rid, (dict, list, bool)):
                yield lineno, None, None, "missing or invalid 'id'"
                continue
            rid = str(rid)
            text = obj.get("text")
            if not isinstance(text, str):
                yield lineno, rid, None, "missing 'text' or 'text' is not a string"
                continue
            yield lineno, rid, text, None


def detect_pii_factory(cfg: "AnonymizeParams") -> Detector:
    """The detector `detect-pii` uses: the stage's entity types plus the evaluation extras (picklable factory)."""
    return build_detector(cfg, entities=list(cfg.entities) + list(getattr(cfg, "eval_extra_entities", [])))


def detect_pii_file(inp: Path, out: Path, params: "Params", batch_lines: int = 128,
                    dedup_cache: int = 50_000) -> dict[str, Any]:
    """`fraudslm detect-pii --in texts.jsonl --out spans.jsonl`.

    Input: JSONL `{"id", "text"}`. Output (same order): `{"id", "entities": [{"type","start","end","score"}]}`.
    A bad line gives `{"id": <id or null>, "line": N, "error": "..."}` in the output and one line on stderr naming
    the file and line; the other lines are processed. Entity types: `anonymize.entities` plus
    `anonymize.eval_extra_entities` (evaluation mode). Beside the output: `<stem>.ledger.json` and
    `<stem>.metrics.json` (counts only, no values). Batches of `batch_lines` lines run on the anonymize stage's
    executor (`anonymize.workers` processes, the detector loaded once and shared by fork where safe); a text whose
    analysis throws gets an error line naming the exception type only.

    A text seen earlier in the file (recognised by an in-memory BLAKE2 digest; the last `dedup_cache` distinct texts
    are remembered) is not analysed again: it gets the spans of its first occurrence (detection is a function of the
    text alone). `texts_analysed` in the metrics counts the texts actually analysed.
    """
    import hashlib
    from collections import OrderedDict, deque

    from pipeline.anonymize.executors import Job, make_executor
    from pipeline.io import atomic_path, write_json
    from pipeline.ledger import Ledger

    inp, out = Path(inp), Path(out)
    if not inp.is_file():
        raise ConfigError(f"{inp}: input file not found")
    ap = params.anonymize
    ledger = Ledger("detect-pii")
    src = inp.name
    per_type: Counter = Counter()
    n_entities = 0
    entity_types: list[str] = []
    with open(inp, "rb") as fh:
        n_lines = sum(1 for _ in fh)
    executor = make_executor(ap, ap.model_dump_json(), detect_pii_factory, -(-n_lines // batch_lines))
    # digest -> (entities, error) of texts already written; `first` marks digests sent in a batch not yet written;
    # `refs` counts later lines waiting for a digest (kept out of eviction until they are written)
    cache: OrderedDict[bytes, tuple[Optional[list], Optional[str]]] = OrderedDict()
    first: set[bytes] = set()
    refs: Counter = Counter()
    n_analysed = 0

    def digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def write(batch: list[tuple[int, str, bytes, bool]], res, fh) -> None:
        nonlocal n_entities
        k = 0
        for lineno, rid, h, new in batch:
            if new:
                ss = res.ner_spans[k]
                err = res.ner_errors.get(k, "detect_failed") if ss is None else None
                k += 1
                ents = None if ss is None else [{"type": t, "start": st, "end": en, "score": sc}
                                                for t, st, en, sc, _ in ss]
                cache[h] = (ents, err)
                first.discard(h)
            else:
                ents, err = cache[h]
                cache.move_to_end(h)
                refs[h] -= 1
                if refs[h] <= 0:
                    del refs[h]
            if ents is None:
                print(f"fraudslm: {inp}: line {lineno}: analysis failed ({err.split(':', 1)[-1]})", file=sys.stderr)
                fh.write(json.dumps({"id": rid, "line": lineno, "error": err}) + "\n")
                ledger.quarantine(src, "detect_failed")
                continue
            per_type.update(e["type"] for e in ents)
            n_entities += len(ents)
            fh.write(json.dumps({"id": rid, "entities": ents}, ensure_ascii=False) + "\n")
            ledger.accept(src)
        # forget the oldest, except digests later lines still wait for (those move to the newest end); one pass
        # over the cache at most, so a cache full of awaited digests costs O(n), not O(n^2)
        for _ in range(len(cache)):
            if len(cache) <= dedup_cache:
                break
            h, v = cache.popitem(last=False)
            if h in refs:
                cache[h] = v

    # items in output order: ("batch", lines, future) or ("bad", line) ; at most `slots` batches in flight
    pending: deque = deque()
    in_flight = 0

    def submit(batch: list[tuple[int, str, str]]) -> None:
        nonlocal in_flight, n_analysed
        if not batch:
            return
        lines, texts = [], []
        for lineno, rid, text in batch:
            h = digest(text)
            new = h not in cache and h not in first
            if new:
                first.add(h)
                texts.append(text)
            else:
                refs[h] += 1
                if h in cache:
                    cache.move_to_end(h)
            lines.append((lineno, rid, h, new))
        n_analysed += len(texts)
        if texts:
            pending.append(("batch", lines, executor.submit(Job(len(pending), texts, []))))
            in_flight += 1
        else:
            pending.append(("batch", lines, None))

    def drain(fh, keep: int) -> None:
        nonlocal in_flight
        while pending and (in_flight > keep or pending[0][0] == "bad" or pending[0][2] is None):
            kind, item, fut = pending.popleft()
            if kind == "bad":
                lineno, rid, err = item
                fh.write(json.dumps({"id": rid, "line": lineno, "error": err}) + "\n")
                continue
            if fut is not None:
                in_flight -= 1
            write(item, fut.result() if fut is not None else None, fh)

    try:
        with atomic_path(out, suffix=".jsonl") as tmp, open(tmp, "w", encoding="utf-8") as fh:
            batch: list[tuple[int, str, str]] = []
            for lineno, rid, text, err in _iter_jsonl(inp):
                ledger.read(src)
                if err is not None:
                    submit(batch)
                    batch = []
                    print(f"fraudslm: {inp}: line {lineno}: {err}", file=sys.stderr)
                    pending.append(("bad", (lineno, rid, err), None))
                    ledger.quarantine(src, "bad_line")
                    continue
                batch.append((lineno, rid, text))
                if len(batch) >= batch_lines:
                    submit(batch)
                    batch = []
                    drain(fh, executor.slots)
            submit(batch)
            drain(fh, 0)
    finally:
        executor.close()
    entity_types = sorted(set(ap.entities) | set(getattr(ap, "eval_extra_entities", [])))
    metrics = {
        "records": ledger.totals()["read"],
        "bad_lines": ledger.totals()["quarantined"],
        "entities": n_entities,
        "entities_by_type": dict(sorted(per_type.items())),
        "entity_types": entity_types,
        "texts_analysed": n_analysed,
        "spacy_model": ap.spacy_model,
        "pii_model": ap.pii_model,
        "score_threshold": ap.score_threshold,
        "params_digest": params.digest(),
    }
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    write_json(out.with_name(f"{stem}.ledger.json"), ledger.to_dict())
    write_json(out.with_name(f"{stem}.metrics.json"), metrics)
    return metrics
