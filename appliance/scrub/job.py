"""The sandboxed side of scrubbing (child job `"kind": "scrub"` of appliance.train.child):
the only process that loads spaCy and Presidio for `dataset import` and `scrub eval`.

The job arrives over stdin: the PII policy, the NER model's directory (bound read-only,
digest-checked by the parent), and either the records' texts and the pseudonym key
(`mode` "import") or the labeled records (`mode` "evaluate"). What goes back over the
event pipe: `progress` events, then `scrubbed` (appliance.scrub.batch.Scrubbed) or
`evaluated` (the scores of appliance.scrub.evaluate, and the raw Presidio baseline's when
asked), each with what the engine could detect and the seconds spent (loading the engine, and
in all). Nothing is written: the sandbox has no
writable path but its private /tmp.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[..., None]


def run(job: dict[str, Any], emit: Emit) -> int:
    """Build the engine and do the job; a failure is reported by appliance.train.child as an
    `error` event (an operator's error with its class, place and hint)."""
    from appliance.policy.pii import PiiPolicy
    from appliance.scrub.engine import Analyzer

    started = time.monotonic()
    policy = PiiPolicy.model_validate(job["pii"])
    model = Path(job["model_path"]) if job.get("model_path") else None
    analyzer = Analyzer(policy, model)
    engine = {"has_ner": analyzer.has_ner, "undetectable": analyzer.undetectable,
              "load_s": time.monotonic() - started}
    workers = job.get("workers")
    if job["mode"] == "import":
        from appliance.scrub.batch import scrub_texts

        key = bytearray.fromhex(job.pop("key"))
        try:
            done = scrub_texts(job["records"], policy, bytes(key), analyzer, workers=workers,
                               progress=lambda d, n: emit("progress", stage="scrub", done=d,
                                                          total=n))
        finally:
            key[:] = bytes(len(key))  # best effort: Python may hold other copies briefly
        emit("scrubbed", **done.as_dict(), engine=engine, seconds=time.monotonic() - started)
        return 0
    from appliance.scrub.evaluate import GoldSpan, Labeled, evaluate, evaluate_serial

    records = [Labeled(text, tuple(GoldSpan(str(e), int(s), int(t)) for e, s, t in spans))
               for text, spans in job["records"]]
    result = evaluate(analyzer, records, workers=workers)
    raw = None
    if job.get("baseline"):
        from appliance.scrub.baseline import PresidioBaseline

        raw = evaluate_serial(PresidioBaseline(model), records)
    emit("evaluated", result=result, baseline=raw, engine=engine,
         seconds=time.monotonic() - started)
    return 0
