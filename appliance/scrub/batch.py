"""Scrub the texts of a batch of records: analyse, quarantine, anonymise, count residuals.

The whole of what `dataset import` does with the NER model and Presidio, in one call, so
that it runs in the sandbox's scrub job (appliance.scrub.job) and the importing process
never loads spaCy: records' texts and the pseudonym key go in, scrubbed texts and counts
(never a detection's text) come out. A record is quarantined whole when any of its texts
is; the residual pass counts over the texts of the records that are kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.policy.pii import PiiPolicy


@dataclass
class Scrubbed:
    """Per record its scrubbed texts (empty when quarantined), the quarantine reasons by
    record index, replaced PII per type, and the residual pass over the kept texts."""

    texts: list[list[str]]
    quarantine: dict[int, str]
    pii: Counter[str]
    residual: dict[str, int] = field(default_factory=dict)
    dirty: int = 0
    """Kept texts in which the residual pass found anything."""

    def as_dict(self) -> dict[str, Any]:
        """The JSON form the scrub job sends back."""
        return {"texts": self.texts, "quarantine": {str(k): v for k, v in
                                                    self.quarantine.items()},
                "pii": dict(self.pii), "residual": self.residual, "dirty": self.dirty}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scrubbed:
        """Inverse of as_dict."""
        return cls([[str(t) for t in texts] for texts in data["texts"]],
                   dict(sorted((int(k), str(v)) for k, v in data["quarantine"].items())),
                   Counter({str(k): int(v) for k, v in data["pii"].items()}),
                   {str(k): int(v) for k, v in data["residual"].items()}, int(data["dirty"]))


def scrub_texts(records: Sequence[Sequence[str]], policy: PiiPolicy, key: bytes,
                analyzer: Any, *, workers: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Scrubbed:
    """Scrub every record's texts with `analyzer` (appliance.scrub.engine.Analyzer) and the
    pseudonym `key`, then run the independent residual pass over what is kept."""
    from appliance.scrub.engine import analyze_all
    from appliance.scrub.operators import Anonymizer, merge
    from appliance.scrub.residual import ResidualPass

    flat = [(i, t) for i, texts in enumerate(records) for t in texts]
    outcomes = analyze_all(analyzer, [t for _, t in flat], workers=workers, progress=progress)
    quarantine: dict[int, str] = {}
    for (i, _), outcome in zip(flat, outcomes, strict=True):
        if outcome.quarantined is not None:
            quarantine.setdefault(i, outcome.quarantined)
    anonymizer = Anonymizer(policy, key)
    pii: Counter[str] = Counter()
    texts: list[list[str]] = [[] for _ in records]
    for (i, text), outcome in zip(flat, outcomes, strict=True):
        if i in quarantine:
            continue
        spans = merge(outcome.detections)
        pii.update(d.entity for d in spans)
        texts[i].append(anonymizer.apply(text, spans))
    kept = [t for i in range(len(records)) if i not in quarantine for t in texts[i]]
    residual, dirty = ResidualPass().count(kept)
    return Scrubbed(texts, quarantine, pii, residual, dirty)
