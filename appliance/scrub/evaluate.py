"""Score detection on a labeled file in the presidio-research format.

Per gold span: masked (every alphanumeric character replaced), partial, leaked (none
replaced). Over-redaction: share of replaced characters outside every gold span. Gold labels
of other label sets are mapped onto the appliance's names (`appliance.scrub.labels`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import DatasetFormatError
from appliance.fsutil import ParseProblem, loads_json, read_regular
from appliance.scrub.engine import Analyzer, Outcome, analyze_all
from appliance.scrub.labels import ours
from appliance.scrub.operators import merge

MAX_LABELED_BYTES = 1 << 30
"""Largest labeled file read (the shipped test set is under a MiB)."""


@dataclass(frozen=True)
class GoldSpan:
    """One labeled span."""

    entity: str
    start: int
    end: int


@dataclass(frozen=True)
class Labeled:
    """One labeled text."""

    text: str
    spans: tuple[GoldSpan, ...]


def load_labeled(path: Path) -> list[Labeled]:
    """Read a presidio-research JSON list; DatasetFormatError naming the bad record."""
    raw = read_regular(path, max_bytes=MAX_LABELED_BYTES, what="the labeled file",
                       error=DatasetFormatError)
    try:
        data = loads_json(raw)
    except ParseProblem as exc:
        raise DatasetFormatError(f"not a JSON file: {exc}", where=str(path)) from None
    if not isinstance(data, list):
        raise DatasetFormatError("expected a JSON list of {full_text, spans}", where=str(path))
    out = []
    for i, item in enumerate(data):
        try:
            text = item["full_text"]
            spans = tuple(GoldSpan(str(s["entity_type"]), int(s["start_position"]),
                                   int(s["end_position"])) for s in item.get("spans", []))
            if not isinstance(text, str) or any(
                    not 0 <= s.start < s.end <= len(text) for s in spans):
                raise ValueError("span outside the text")
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetFormatError(f"record {i}: {exc}", where=str(path)) from exc
        out.append(Labeled(text, spans))
    return out


def score(records: Sequence[Labeled], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Masked/partial/leaked per entity type and over-redaction (quarantined = masked)."""
    counts: dict[str, list[int]] = {}
    replaced_total = replaced_outside = 0
    for rec, outcome in zip(records, outcomes, strict=True):
        covered = bytearray(len(rec.text))
        if outcome.quarantined is not None:  # the whole record is withheld
            covered[:] = b"\1" * len(rec.text)
        for d in merge(outcome.detections):
            covered[d.start:d.end] = b"\1" * (d.end - d.start)
        gold = bytearray(len(rec.text))
        for g in rec.spans:
            gold[g.start:g.end] = b"\1" * (g.end - g.start)
            chars = [i for i in range(g.start, g.end) if rec.text[i].isalnum()]
            hit = sum(covered[i] for i in chars)
            row = counts.setdefault(ours(g.entity), [0, 0, 0, 0])
            row[0] += 1
            row[1 if hit == len(chars) else 3 if hit == 0 else 2] += 1
        replaced_total += sum(covered)
        replaced_outside += sum(1 for c, g in zip(covered, gold, strict=True) if c and not g)
    entities = {e: {"n": n, "masked": m / n, "partial": p / n, "leaked": lk / n}
                for e, (n, m, p, lk) in sorted(counts.items())}
    over = replaced_outside / replaced_total if replaced_total else 0.0
    return {"entities": entities, "over_redaction": over}


def summary(result: dict[str, Any], types: Sequence[str]) -> dict[str, float]:
    """Pooled masked/leaked share over the entity types `types` present in `result`."""
    rows = [v for k, v in result["entities"].items() if k in types]
    n = sum(r["n"] for r in rows)
    if not n:
        return {"n": 0, "masked": 0.0, "leaked": 0.0}
    return {"n": n, "masked": sum(r["masked"] * r["n"] for r in rows) / n,
            "leaked": sum(r["leaked"] * r["n"] for r in rows) / n}


def evaluate(analyzer: Analyzer, records: Sequence[Labeled], *,
             workers: int | None = None) -> dict[str, Any]:
    """Run the analyzer over the labeled records and score it (the fields of docs/interface.md)."""
    start = time.monotonic()
    outcomes = analyze_all(analyzer, [r.text for r in records], workers=workers)
    return _scored(records, outcomes, start)


def evaluate_serial(engine: Any, records: Sequence[Labeled]) -> dict[str, Any]:
    """Score any engine with `analyze_batch(texts) -> [Outcome]` (a baseline) in-process."""
    start = time.monotonic()
    return _scored(records, engine.analyze_batch([r.text for r in records]), start)


def below(result: dict[str, Any], baseline: dict[str, Any],
          types: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Entity types (of `types`, default all) where `result` masks fewer or leaks more gold
    spans than `baseline`."""
    out = {}
    for entity, theirs in baseline["entities"].items():
        mine = result["entities"].get(entity)
        if types is not None and entity not in types:
            continue
        if mine and (mine["masked"] < theirs["masked"] or mine["leaked"] > theirs["leaked"]):
            out[entity] = {"masked": mine["masked"], "baseline_masked": theirs["masked"],
                           "leaked": mine["leaked"], "baseline_leaked": theirs["leaked"]}
    return out


def _scored(records: Sequence[Labeled], outcomes: Sequence[Outcome],
            start: float) -> dict[str, Any]:
    elapsed = max(time.monotonic() - start, 1e-9)
    result = score(records, outcomes)
    return {"records": len(records), "records_per_s": len(records) / elapsed,
            "quarantined": sum(1 for o in outcomes if o.quarantined is not None), **result}
