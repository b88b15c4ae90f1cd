"""Deterministic seeded train/eval split.

Each record's rank is HMAC-SHA256(seed, its normalised content key): the same file and seed
give the same split whatever the input order, and a record's side does not depend on
which other records are present. The lowest-ranked ceil(n x fraction) records (at least one
when n >= 2) are held out for evaluation and never enter training.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Sequence


def eval_indices(keys: Sequence[bytes], fraction: float, seed: int) -> set[int]:
    """Indices of the records held out for evaluation."""
    n = len(keys)
    if n < 2:
        return set()
    k = min(n - 1, max(1, math.ceil(n * fraction)))
    seed_bytes = seed.to_bytes(8, "big")
    ranked = sorted(range(n), key=lambda i: hmac.new(seed_bytes, keys[i], hashlib.sha256).digest())
    return set(ranked[:k])
