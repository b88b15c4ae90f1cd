"""Anonymisation operators per entity type, applied with presidio-anonymizer.

placeholder: `<PERSON>`; pseudonym: `<PERSON_1f3a9c02b7>`, a keyed HMAC-SHA256 surrogate that
is the same for the same value (case and white space folded) within one dataset; surrogate:
a realistic fake of the same kind (Faker, seeded by the same keyed HMAC: "Maria Lopez" for
one person throughout a dataset), so that an identifier the detectors miss does not stand out
among the replacements ("hiding in plain sight"); mask: every
character becomes `*`; redact: removed; hash: `<PERSON:hmac-sha256 hex>` keyed (never a bare
hash, which a dictionary of names would invert). The key is random per dataset.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from appliance.policy.pii import PiiPolicy
from appliance.scrub.detection import Detection

KEY_BYTES = 32
SURROGATES = {"PERSON": "name", "STREET_ADDRESS": "street_address", "LOCATION": "city"}
"""Faker provider per entity type for the surrogate operator. Other types get the pseudonym:
a realistic fake phone number, e-mail or card would be counted (rightly) by the residual
pass, which cannot tell it from a real one, and refuse the import."""


@lru_cache(maxsize=1)
def _faker() -> Any:
    from faker import Faker

    return Faker("en_US")


def new_key() -> bytes:
    """A fresh random per-dataset pseudonym key."""
    return secrets.token_bytes(KEY_BYTES)


def merge(detections: Sequence[Detection]) -> list[Detection]:
    """Overlapping detections merged into their union; the entity of the highest scoring
    (then longest) member names the merged span (a checksum-validated card beats a noisy NER
    label over the same digits). Ordered by position."""
    spans = sorted(detections, key=lambda d: (d.start, -d.end))
    merged: list[list[Any]] = []
    for d in spans:
        if merged and d.start < merged[-1][1]:
            group = merged[-1]
            group[1] = max(group[1], d.end)
            group[2].append(d)
        else:
            merged.append([d.start, d.end, [d]])
    out = []
    for start, end, group in merged:
        best = max(group, key=lambda d: (d.score, d.end - d.start))
        out.append(Detection(best.entity, start, end, max(d.score for d in group)))
    return out


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


class Anonymizer:
    """Applies the policy's operator per entity type with a per-dataset key."""

    def __init__(self, policy: PiiPolicy, key: bytes) -> None:
        from presidio_anonymizer import AnonymizerEngine

        self.policy = policy
        self._key = key
        self._engine = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def surrogate(self, entity: str, value: str) -> str:
        """The pseudonym of `value` (stable within this key)."""
        digest = hmac.new(self._key, f"{entity}\0{_fold(value)}".encode(), hashlib.sha256)
        return f"<{entity}_{digest.hexdigest()[:10]}>"

    def fake(self, entity: str, value: str) -> str:
        """A realistic surrogate of `value`, the same for the same value under this key."""
        make = SURROGATES.get(entity)
        if make is None:
            return self.surrogate(entity, value)
        digest = hmac.new(self._key, f"surrogate\0{entity}\0{_fold(value)}".encode(),
                          hashlib.sha256).digest()
        faker = _faker()
        faker.seed_instance(int.from_bytes(digest[:8], "big"))
        return str(getattr(faker, make)())

    def keyed_hash(self, entity: str, value: str) -> str:
        """Keyed hash of `value` (HMAC-SHA256 under a key derived for hashing)."""
        sub = hmac.new(self._key, b"appliance-scrub-hash", hashlib.sha256).digest()
        return f"<{entity}:{hmac.new(sub, value.encode(), hashlib.sha256).hexdigest()}>"

    def _config(self, entity: str) -> Any:
        from presidio_anonymizer.entities import OperatorConfig

        op = self.policy.operators.get(entity, self.policy.default_operator)
        if op == "placeholder":
            return OperatorConfig("replace", {"new_value": f"<{entity}>"})
        if op == "pseudonym":
            return OperatorConfig("custom", {"lambda": lambda v: self.surrogate(entity, v)})
        if op == "surrogate":
            return OperatorConfig("custom", {"lambda": lambda v: self.fake(entity, v)})
        if op == "hash":
            return OperatorConfig("custom", {"lambda": lambda v: self.keyed_hash(entity, v)})
        if op == "mask":
            return OperatorConfig("mask", {"masking_char": "*", "chars_to_mask": 10**6,
                                           "from_end": False})
        return OperatorConfig("redact", {})

    def apply(self, text: str, detections: Sequence[Detection]) -> str:
        """`text` with every (merged) detection replaced by its entity type's operator."""
        from presidio_anonymizer.entities import RecognizerResult

        spans = merge(detections)
        if not spans:
            return text
        results = [RecognizerResult(d.entity, d.start, d.end, d.score) for d in spans]
        operators = {d.entity: self._config(d.entity) for d in spans}
        return str(self._engine.anonymize(text=text, analyzer_results=results,
                                          operators=operators).text)
