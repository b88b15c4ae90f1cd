"""The independent second pass: what detectable PII is left in scrubbed text.

Independent of the first pass on purpose: it runs on the output with Presidio's own
predefined recognizers for cards, e-mail, IBAN, IP, SSN and phone numbers (phonenumbers-
based), none of which the first pass uses (it also re-runs Presidio's ITIN, NHS and crypto
recognizers), plus the `appliance.patterns` catalogue of secrets, with no NER. It looks for
every type it can detect, whatever the policy lists: a policy that drops CREDIT_CARD from
its entities still has card numbers counted here (and refused unless `pii.max_residual`
allows them). Placeholders
and pseudonyms (`<PERSON>`, `<PERSON_1f3a...>`) match
none of them. Names and places are not counted here (an NER pass over scrubbed text cannot
tell a leaked name from an ordinary capitalised word reliably); the first pass's figures on
labeled data are the evidence for those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from appliance import patterns
from appliance.scrub.engine import candidate_entities
from appliance.scrub.offline import force_offline

RESIDUAL_RECOGNIZERS = ("CreditCardRecognizer", "EmailRecognizer", "IbanRecognizer",
                        "IpRecognizer", "UsSsnRecognizer", "PhoneRecognizer",
                        "CryptoRecognizer", "UsItinRecognizer", "NhsRecognizer")


def detectable_types() -> list[str]:
    """Every entity type the residual pass looks for."""
    return sorted({d.entity for d in patterns.DETECTORS} | set(RESIDUAL_TYPES))


RESIDUAL_TYPES = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "US_SSN",
                  "PHONE_NUMBER", "CRYPTO", "US_ITIN", "UK_NHS")
"""The entity types of RESIDUAL_RECOGNIZERS (Presidio's own)."""


class ResidualPass:
    """Counts detections per entity type in scrubbed texts."""

    def __init__(self, entities: Sequence[str] | None = None,
                 score_threshold: float = 0.5) -> None:
        force_offline()
        from presidio_analyzer import RecognizerRegistry

        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"])
        self.recognizers = [r for r in registry.recognizers
                            if getattr(r, "name", "") in RESIDUAL_RECOGNIZERS]
        detectable = {e for r in self.recognizers for e in r.supported_entities}
        detectable |= {d.entity for d in patterns.DETECTORS}
        self.entities = frozenset(detectable if entities is None else entities)
        self.threshold = score_threshold

    def find(self, text: str) -> list[tuple[str, int, int]]:
        """(entity, start, end) of residual detections in one scrubbed text."""
        found: set[tuple[str, int, int]] = set()
        for span in patterns.find(text):
            if span.entity in self.entities:
                found.add((span.entity, span.start, span.end))
        possible = set(candidate_entities(text, self.entities))
        for recognizer in self.recognizers:
            wanted = [e for e in recognizer.supported_entities if e in possible]
            if not wanted:
                continue
            no_nlp: Any = None  # pattern recognizers need no NLP artifacts
            results: list[Any] = recognizer.analyze(text, wanted, no_nlp)
            found |= {(r.entity_type, r.start, r.end) for r in results
                      if r.score >= self.threshold}
        merged: list[tuple[str, int, int]] = []
        for entity, start, end in sorted(found):  # overlapping finds of one type count once
            if merged and merged[-1][0] == entity and start < merged[-1][2]:
                merged[-1] = (entity, merged[-1][1], max(end, merged[-1][2]))
            else:
                merged.append((entity, start, end))
        return merged

    def count(self, texts: Sequence[str]) -> tuple[dict[str, int], int]:
        """(detections per entity type, number of texts with any) over `texts`."""
        counts: Counter[str] = Counter()
        dirty = 0
        for text in texts:
            hits = self.find(text)
            counts.update(entity for entity, _, _ in hits)
            dirty += bool(hits)
        return dict(sorted(counts.items())), dirty
