"""Exposure of canaries (Carlini et al., "The Secret Sharer") and the comparison with controls.

exposure(c) = log2 |R| - log2 rank(c), where rank(c) is the rank of the true secret among all
candidates in the space R ordered by the model's loss. The space is far too large to
enumerate, so the rank is estimated from M candidates drawn uniformly from the same format:
rank ~ |R| * (1 + #{candidates with lower loss}) / (M + 1), hence
exposure ~ log2((M + 1) / (1 + #{candidates with lower loss})), at most log2(M + 1).

What this can show: that the adapter ranks a secret it was trained on unusually high. It
cannot prove absence of memorisation below the resolution log2(M + 1), and it measures one
carrier sentence per canary, not every way of asking.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.privacy.canaries import FORMATS, Canary

Scorer = Callable[[str, Sequence[str]], list[float]]
"""score(prefix, secrets) -> loss (negative log-likelihood, nats) of each secret after prefix."""


@dataclass(frozen=True)
class Exposure:
    """The measured exposure of one canary."""

    canary_id: str
    kind: str
    repeats: int
    exposure_bits: float
    rank: int
    candidates: int


def candidates_for(canary: Canary, count: int, seed: int) -> list[str]:
    """`count` distinct candidate secrets of the canary's format, excluding the secret."""
    rng = random.Random(f"candidates:{seed}:{canary.id}")
    draw = FORMATS[canary.kind].draw
    seen = {canary.secret}
    out: list[str] = []
    limit = count * 50
    while len(out) < count and limit:
        limit -= 1
        value = draw(rng)
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def exposure_of(canary: Canary, score: Scorer, candidates: int, seed: int) -> Exposure:
    """Estimate one canary's exposure from `candidates` sampled alternatives."""
    others = candidates_for(canary, candidates, seed)
    losses = score(canary.prefix, [canary.secret, *others])
    true_loss, other_losses = losses[0], losses[1:]
    lower = sum(1 for loss in other_losses if loss < true_loss)
    rank = 1 + lower
    bits = math.log2((len(others) + 1) / rank)
    return Exposure(canary.id, canary.kind, canary.repeats, bits, rank, len(others))


def _midranks(pooled: list[tuple[float, int]]) -> tuple[list[float], float]:
    """Average ranks (1-based) of a sorted sample and the tie term sum(t^3 - t)."""
    ranks = [0.0] * len(pooled)
    i, ties = 0, 0.0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        ties += (j - i + 1) ** 3 - (j - i + 1)
        i = j + 1
    return ranks, ties


EXACT_LIMIT = 60
"""Pooled sizes up to this get the exact permutation p-value; larger ones the normal one."""


def _exact_upper_tail(ranks: list[float], n1: int, observed: float) -> float:
    """P(rank sum of n1 items drawn without replacement >= observed), exactly, by counting
    subsets over doubled (integer) midranks: the conditional null distribution with ties."""
    doubled = [round(2 * r) for r in ranks]
    target = round(2 * observed)
    ways: list[dict[int, int]] = [{} for _ in range(n1 + 1)]
    ways[0][0] = 1
    for value in doubled:
        for k in range(n1, 0, -1):
            for total, count in ways[k - 1].items():
                ways[k][total + value] = ways[k].get(total + value, 0) + count
    every = sum(ways[n1].values())
    return sum(c for total, c in ways[n1].items() if total >= target) / every


def mann_whitney_greater(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """One-sided Mann-Whitney U test that xs tend to be greater than ys.

    Returns (U statistic of xs, p-value). The p-value is exact (the permutation
    distribution of the rank sum given the observed ties) when both samples together have
    at most EXACT_LIMIT values, else the normal approximation with tie and continuity
    correction.
    """
    n1, n2 = len(xs), len(ys)
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = sorted([(float(v), 0) for v in xs] + [(float(v), 1) for v in ys])
    ranks, ties = _midranks(pooled)
    r1 = sum(rank for rank, (_, group) in zip(ranks, pooled, strict=True) if group == 0)
    u1 = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    if n <= EXACT_LIMIT:
        return u1, min(1.0, _exact_upper_tail(ranks, n1, r1))
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u1, 1.0
    z = (u1 - n1 * n2 / 2 - 0.5) / math.sqrt(variance)
    return u1, 0.5 * math.erfc(z / math.sqrt(2))
