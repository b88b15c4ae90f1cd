"""Exact and normalised (white space and case folded) deduplication; first one kept."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from appliance.intake.validate import Record


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def _fold(data: Any) -> Any:
    if isinstance(data, str):
        return " ".join(data.casefold().split())
    if isinstance(data, list):
        return [_fold(x) for x in data]
    if isinstance(data, dict):
        return {k: _fold(v) for k, v in data.items()}
    return data


def exact_key(record: Record) -> bytes:
    """sha256 of the record's canonical JSON."""
    return hashlib.sha256(_canonical(record.data)).digest()


def normalized_key(record: Record) -> bytes:
    """sha256 of the canonical JSON after folding white space and case in every string."""
    return hashlib.sha256(_canonical(_fold(record.data))).digest()


@dataclass(frozen=True)
class Deduped:
    """Unique records (input order) with their normalised keys, and duplicate counts."""

    records: list[Record]
    keys: list[bytes]
    exact: int
    normalized: int

    @property
    def duplicates(self) -> int:
        """All duplicates removed."""
        return self.exact + self.normalized


def dedupe(records: list[Record], mode: Literal["exact", "normalized"]) -> Deduped:
    """Drop repeated records; `normalized` also drops those equal after folding."""
    seen_exact: set[bytes] = set()
    seen_norm: set[bytes] = set()
    kept: list[Record] = []
    keys: list[bytes] = []
    exact = normalized = 0
    for record in records:
        ek, nk = exact_key(record), normalized_key(record)
        if ek in seen_exact:
            exact += 1
            continue
        seen_exact.add(ek)
        if mode == "normalized" and nk in seen_norm:
            normalized += 1
            continue
        seen_norm.add(nk)
        kept.append(record)
        keys.append(nk)
    return Deduped(kept, keys, exact, normalized)
