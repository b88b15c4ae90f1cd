"""Masking model answers: the policy's PII detector over a generated text, every detected
identifier replaced by `<ENTITY_TYPE>` and counted (counts only ever leave this module).

Runs where the model runs, in the isolated child (appliance.train.generate): Presidio and
spaCy are loaded there, never in the CLI or console process.
"""

from __future__ import annotations

from collections import Counter

from appliance.policy import Policy

WITHHELD = "<answer withheld: it could not be checked for personal data>"


class Masker:
    """The policy's PII detector over answers: identifiers become `<ENTITY_TYPE>`."""

    def __init__(self, policy: Policy) -> None:
        from appliance.scrub.engine import Analyzer
        from appliance.scrub.offline import require_model

        where = require_model(policy.pii.ner_model)
        self.analyzer = Analyzer(policy.pii, where.path)
        self.counts: Counter[str] = Counter()

    def __call__(self, text: str) -> str:
        """`text` with every detected identifier masked (and counted)."""
        from appliance.scrub.engine import analyze_all
        from appliance.scrub.operators import merge

        (outcome,) = analyze_all(self.analyzer, [text], workers=1)
        if outcome.quarantined is not None:
            self.counts["QUARANTINED"] += 1
            return WITHHELD
        for span in reversed(merge(outcome.detections)):
            self.counts[span.entity] += 1
            text = text[:span.start] + f"<{span.entity}>" + text[span.end:]
        return text
