"""Batched, prefiltered, fail-closed PII analysis with Presidio.

Speed comes from three things, none of which changes what is found:
- the spaCy pipeline is loaded with only its NER component (the small English model's NER
  has its own embedding layer) and run over records in batches with `nlp.pipe`;
- each record is analysed only for the entity types that can occur in it (a cheap
  prefilter: no digits, no card/SSN/phone recognizers; no '@', no e-mail recognizer ...),
  and Presidio's slow region-looping phone recognizer is replaced by a regex one;
- large imports are split over a pool of worker processes (fork, one per core).

Fail closed: a record that is too long, whose analysis raises, whose regular expression
times out (Presidio's own pattern recognizers only log that: the log is captured) or whose
analysis exceeds the time limit is quarantined: the caller never gets text for it.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.policy.pii import PiiPolicy
from appliance.scrub.detection import Detection
from appliance.scrub.offline import force_offline, single_blas_thread

NER_LABELS = {"PERSON": "PERSON", "PER": "PERSON", "GPE": "LOCATION", "LOC": "LOCATION",
              "FAC": "LOCATION", "NORP": "NRP", "ORG": "ORGANIZATION", "DATE": "DATE_TIME",
              "TIME": "DATE_TIME"}
NER_ENTITIES = frozenset(NER_LABELS.values())
NAMED_ENTITIES = NER_ENTITIES - {"DATE_TIME"}
"""The NER types that name something (what the not-a-name filter of a detection applies to)."""
PRESIDIO_DEFAULTS = ("CryptoRecognizer", "MedicalLicenseRecognizer", "UsBankRecognizer",
                     "UsItinRecognizer", "UsPassportRecognizer", "NhsRecognizer",
                     "UrlRecognizer", "MacAddressRecognizer", "UuidRecognizer",
                     "DateRecognizer")
"""Presidio's predefined English recognizers the first pass keeps. Cards, e-mail, IBAN, IP,
SSN and phone numbers come from the appliance's catalogue and recognizers instead (same
recall on the dev set, a third of the time; Presidio's region-looping phone recognizer is
the slowest of all), and US driver licences from the cued licence recognizer (Presidio's
weak licence pattern fires on ordinary words). Presidio's own recognizers for those types
run in the residual pass, which is therefore independent of the first pass."""


@dataclass
class Outcome:
    """The analysis of one record: detections, or the reason it is quarantined."""

    detections: list[Detection] = field(default_factory=list)
    quarantined: str | None = None


_DIGITS = re.compile(r"\d")
_IBANISH = re.compile(r"[A-Z]{2}\d{2}")
_HEXISH = re.compile(r"[0-9a-fA-F]{8}-|[0-9a-fA-F]{2}[:-][0-9a-fA-F]{2}")


def candidate_entities(text: str, wanted: frozenset[str]) -> list[str]:
    """The entity types of `wanted` that can possibly occur in `text` (a cheap superset)."""
    digits = len(_DIGITS.findall(text))
    impossible: set[str] = set()
    if digits < 4:
        impossible |= {"CREDIT_CARD", "US_SSN", "PHONE_NUMBER", "US_BANK_NUMBER", "US_ITIN",
                       "US_PASSPORT", "UK_NHS", "MEDICAL_LICENSE", "ZIP_CODE", "IP_ADDRESS",
                       "US_DRIVER_LICENSE", "IBAN_CODE"}
    if digits < 1:
        impossible |= {"STREET_ADDRESS", "AGE", "UUID", "MAC_ADDRESS"}
    if "@" not in text:
        impossible.add("EMAIL_ADDRESS")
    if _IBANISH.search(text) is None:
        impossible.add("IBAN_CODE")
    if _HEXISH.search(text) is None:
        impossible |= {"UUID", "MAC_ADDRESS"}
    if "." not in text and ":" not in text:
        impossible |= {"URL", "IP_ADDRESS"}
    return sorted(wanted - impossible)


class _TimeoutLog(logging.Handler):
    """Counts Presidio's 'timed out' log records (its pattern recognizers swallow timeouts)."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        """Count a timeout warning."""
        if "timed out" in record.getMessage():
            self.count += 1


def _spacy_engine(model_path: Path | None) -> Any:
    """A Presidio SpacyNlpEngine over the NER-only pipeline (or a blank one without model)."""
    import spacy
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    class _NerOnlyEngine(SpacyNlpEngine):
        """Presidio's spaCy engine with lower-cased tokens as lemmas (no lemmatizer run)."""

        def _doc_to_nlp_artifact(self, doc: Any, language: str) -> Any:
            from presidio_analyzer.nlp_engine import NlpArtifacts

            indices, lemmas = [], []
            for token in doc:  # one pass; lower-cased text stands in for the lemma
                indices.append(token.idx)
                lemmas.append(token.lower_)
            entities, scores = self._get_updated_entities(
                self._get_entities(doc), self._get_scores_for_entities(doc))
            return NlpArtifacts(entities=entities, tokens=doc, tokens_indices=indices,
                                lemmas=lemmas, nlp_engine=self, language=language,
                                scores=scores)

    config = NerModelConfiguration(model_to_presidio_entity_mapping=dict(NER_LABELS),
                                   labels_to_ignore=["CARDINAL", "ORDINAL", "QUANTITY", "MONEY",
                                                     "PERCENT", "LANGUAGE", "LAW", "EVENT",
                                                     "WORK_OF_ART", "PRODUCT"])
    engine = _NerOnlyEngine(models=[{"lang_code": "en", "model_name": "blank"}],
                            ner_model_configuration=config)
    if model_path is None:
        nlp = spacy.blank("en")
    else:
        keep = {"ner"}
        nlp = spacy.load(model_path, exclude=[p for p in _pipe_names(model_path) if p not in keep])
    engine.nlp = {"en": nlp}  # type: ignore[assignment]
    return engine


def _enhancer() -> Any:
    """Presidio's lemma context enhancer, skipped when no result could change.

    Presidio's enhancer deep-copies every result, with its explanation, on every call (half
    of the analysis time). A result only changes when its recognizer has context words and
    its score is below the maximum: when no result is like that they are returned as they
    are; otherwise the explanations (never used: no decision process is returned) are
    dropped first so the copy is cheap."""
    from presidio_analyzer import AnalysisExplanation, RecognizerResult
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    key = RecognizerResult.RECOGNIZER_IDENTIFIER_KEY

    class _Enhancer(LemmaContextAwareEnhancer):
        def enhance_using_context(self, text: str, raw_results: list[Any], nlp_artifacts: Any,
                                  recognizers: list[Any], context: Any = None) -> list[Any]:
            with_context = {r.id for r in recognizers if r.context}
            if not any(r.score < 1.0 and (r.recognition_metadata or {}).get(key) in with_context
                       for r in raw_results):
                return raw_results
            for result in raw_results:  # a bare explanation: the decision process is never
                result.analysis_explanation = AnalysisExplanation(  # returned, copies are cheap
                    recognizer="", original_score=result.score)
            return list(super().enhance_using_context(text, raw_results, nlp_artifacts,
                                                      recognizers, context))

    return _Enhancer()


def _pipe_names(model_path: Path) -> list[str]:
    import json

    meta = json.loads((model_path / "meta.json").read_text())
    return list(meta.get("pipeline", []))


class Analyzer:
    """Presidio analysis of records under the policy's entity list and limits."""

    def __init__(self, policy: PiiPolicy, model_path: Path | None,
                 extra_recognizers: Sequence[Any] = ()) -> None:
        force_offline()
        with single_blas_thread():
            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_analyzer import pattern_recognizer as presidio_patterns
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

        from appliance.scrub import recognizers as ours

        self.policy = policy
        self.has_ner = model_path is not None
        timeout = policy.fail_closed.analysis_timeout_s
        presidio_patterns.REGEX_TIMEOUT_SECONDS = timeout  # type: ignore[assignment]
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"])
        registry.recognizers = [r for r in registry.recognizers
                                if getattr(r, "name", "") in PRESIDIO_DEFAULTS]
        if self.has_ner:
            registry.add_recognizer(SpacyRecognizer(supported_entities=sorted(NER_ENTITIES)))
        ours.first_names()  # load the gazetteer once, before any worker is forked
        for recognizer in [*ours.extra_recognizers(timeout), *extra_recognizers]:
            registry.add_recognizer(recognizer)
        from appliance.scrub.detectors import english_words, name_gazetteer

        person = "PERSON" in policy.entities
        self.words = english_words(model_path) if person else frozenset()
        self.names = name_gazetteer() if person else frozenset()
        self.nlp_engine = _spacy_engine(model_path)
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=self.nlp_engine,
                                     supported_languages=["en"],
                                     context_aware_enhancer=_enhancer())
        supported = set(self.engine.get_supported_entities("en"))
        self.wanted = frozenset(e for e in policy.entities if e in supported)
        self.undetectable = sorted(set(policy.entities) - supported)
        self._timeouts = _TimeoutLog()
        logging.getLogger("presidio-analyzer").addHandler(self._timeouts)
        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)

    def analyze_batch(self, texts: Sequence[str]) -> list[Outcome]:
        """Analyse `texts` (one NLP batch); quarantines instead of ever raising per record."""
        limits = self.policy.fail_closed
        outcomes = [Outcome() for _ in texts]
        todo = []
        for i, text in enumerate(texts):
            if len(text) > limits.max_record_chars:
                outcomes[i].quarantined = f"longer than {limits.max_record_chars} characters"
            else:
                todo.append(i)
        try:
            artifacts = [a for _, a in self.nlp_engine.process_batch(
                [texts[i] for i in todo], language="en", batch_size=256)]
        except Exception:  # one bad text must not pass the rest unanalysed: go one by one
            artifacts = []
            for i in todo:
                try:
                    artifacts.append(self.nlp_engine.process_text(texts[i], "en"))
                except Exception as exc:
                    outcomes[i].quarantined = f"NLP failed: {type(exc).__name__}"
                    artifacts.append(None)
        for i, artifact in zip(todo, artifacts, strict=True):
            if artifact is not None:
                outcomes[i] = self._analyze_one(texts[i], artifact)
        return outcomes

    def _analyze_one(self, text: str, artifact: Any) -> Outcome:
        from appliance.scrub.recognizers import NOT_NAMES, AnalysisTimeoutError, extend_name

        entities = candidate_entities(text, self.wanted)
        if not entities:
            return Outcome()
        before = self._timeouts.count
        start = time.monotonic()
        try:
            results = self.engine.analyze(text, language="en", entities=entities,
                                          nlp_artifacts=artifact,
                                          score_threshold=self.policy.score_threshold)
        except AnalysisTimeoutError as exc:
            return Outcome(quarantined=f"regex timeout: {exc}")
        except Exception as exc:
            return Outcome(quarantined=f"analysis failed: {type(exc).__name__}")
        if self._timeouts.count != before:
            return Outcome(quarantined="regex timeout in a Presidio recognizer")
        if time.monotonic() - start > self.policy.fail_closed.analysis_timeout_s:
            return Outcome(quarantined="analysis exceeded the time limit")
        detections = []
        for r in results:
            found = text[r.start:r.end].strip()
            if r.entity_type in NAMED_ENTITIES and (
                    found in NOT_NAMES or found.capitalize() in NOT_NAMES
                    or not any(c.isalpha() for c in found)
                    or (r.entity_type == "PERSON" and any(c.isdigit() for c in found))):
                continue  # NER calling "Summarise", "#80239" or "Convert 25 degrees" a name
            begin, end = r.start, r.end
            if r.entity_type == "PERSON":
                begin = _trim_leading(text, begin, end, NOT_NAMES)
                end = extend_name(text, end)
            detections.append(Detection(r.entity_type, begin, end, float(r.score)))
        return self._union(text, detections)

    def _union(self, text: str, found: list[Detection]) -> Outcome:
        """`found` and the NER-independent detectors' finds (appliance.scrub.detectors) of
        the wanted types; a regex timeout quarantines."""
        try:
            return Outcome([*found, *self._independent(text, found)])
        except TimeoutError as exc:
            return Outcome(quarantined=f"regex timeout: {exc}")

    def _independent(self, text: str, found: list[Detection]) -> list[Detection]:
        from appliance.scrub import detectors

        limit = self.policy.fail_closed.analysis_timeout_s
        off = detectors.DISABLED
        extra: list[Detection] = []
        if "STREET_ADDRESS" in self.wanted and "addresses" not in off:
            extra += detectors.addresses(text, limit)
        if "digit_runs" not in off:
            extra += [d for d in detectors.digit_runs(text, limit) if d.entity in self.wanted]
        if "PERSON" in self.wanted:
            if "uncommon_words" not in off:
                extra += detectors.uncommon_words(text, self.words, limit, self.names)
            if "name_positions" not in off:
                extra += detectors.name_positions(text, self.names, limit)
            if "propagate" not in off:
                extra += detectors.propagate(text, [*found, *extra], limit, self.names)
        return extra


def _trim_leading(text: str, start: int, end: int, words: frozenset[str]) -> int:
    """Move `start` past leading greeting/function words ("Sorry Laura Lee" -> "Laura Lee")."""
    while True:
        match = re.match(r"([A-Za-z]+)[\s,]+", text[start:end])
        if match is None or match.group(1) not in words:
            return start
        start += match.end()


_WORKER: dict[str, Analyzer] = {}
"""The analyzer forked workers inherit (set only while a pool runs)."""


def _work(texts: list[str]) -> list[Outcome]:
    return _WORKER["analyzer"].analyze_batch(texts)


def analyze_all(analyzer: Analyzer, texts: Sequence[str], *, workers: int | None = None,
                chunk: int | None = None, progress: Callable[[int, int], None] | None = None
                ) -> list[Outcome]:
    """Analyse every text, over a process pool when it pays; keeps the input order.

    Identical texts (a system prompt repeated in every chat) are analysed once. A chunk
    whose worker does not answer within chunk size x the per-record time limit is
    quarantined as a whole (fail closed) and the pool is torn down."""
    distinct = list(dict.fromkeys(texts))
    if len(distinct) < len(texts):
        found = dict(zip(distinct, _analyze_distinct(analyzer, distinct, workers, chunk,
                                                     progress), strict=True))
        return [found[t] for t in texts]
    return _analyze_distinct(analyzer, texts, workers, chunk, progress)


def _analyze_distinct(analyzer: Analyzer, texts: Sequence[str], workers: int | None,
                      chunk: int | None, progress: Callable[[int, int], None] | None
                      ) -> list[Outcome]:
    total = len(texts)
    workers = workers if workers is not None else min(os.cpu_count() or 1, 8)
    if chunk is None:  # large NER batches: about one chunk per worker, 64..512 texts
        chunk = max(64, min(512, -(-total // max(workers, 1))))
    chunks = [list(texts[i:i + chunk]) for i in range(0, total, chunk)]
    out: list[Outcome] = []
    if workers <= 1 or len(chunks) < 2 or "fork" not in multiprocessing.get_all_start_methods():
        for piece in chunks:
            out += analyzer.analyze_batch(piece)
            if progress:
                progress(len(out), total)
        return out
    _WORKER["analyzer"] = analyzer
    limit = chunk * analyzer.policy.fail_closed.analysis_timeout_s
    pool = multiprocessing.get_context("fork").Pool(workers)
    try:
        pending = [pool.apply_async(_work, (piece,)) for piece in chunks]
        for piece, result in zip(chunks, pending, strict=True):
            try:
                out += result.get(timeout=limit)
            except multiprocessing.TimeoutError:
                out += [Outcome(quarantined="analysis worker timed out") for _ in piece]
            except Exception as exc:
                out += [Outcome(quarantined=f"analysis worker failed: {type(exc).__name__}")
                        for _ in piece]
            if progress:
                progress(len(out), total)
    finally:
        pool.terminate()
        pool.join()
        _WORKER.clear()
    return out
