"""Raw Presidio, scored beside the appliance on the same file in the same run.

`AnalyzerEngine` with its default English recognizers over the same digest-pinned spaCy
model (the whole pipeline, as Presidio loads it), `analyze(text)` one record at a time: what
an operator gets from the library alone. Its detections are scored exactly like ours (any
detection masks its characters, whatever entity it names)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appliance.scrub.detection import Detection
from appliance.scrub.engine import Outcome
from appliance.scrub.offline import force_offline

BASELINES = ("presidio",)


class PresidioBaseline:
    """Presidio's AnalyzerEngine with default recognizers; quarantines nothing."""

    name = "presidio"

    def __init__(self, model_path: Path | None, score_threshold: float = 0.0) -> None:
        force_offline()
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        if model_path is None:
            self.engine: Any = AnalyzerEngine(supported_languages=["en"])
        else:
            nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(model_path)}])
            nlp.load()
            self.engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
        self.threshold = score_threshold

    def analyze_batch(self, texts: Sequence[str]) -> list[Outcome]:
        """One `analyze` call per text, as the library's documentation shows."""
        return [Outcome([Detection(r.entity_type, r.start, r.end, float(r.score))
                         for r in self.engine.analyze(t, language="en",
                                                      score_threshold=self.threshold)])
                for t in texts]
