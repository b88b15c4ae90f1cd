"""The exposure test of one adapter: measure every canary, compare planted with controls,
try direct extraction, and reach a verdict.

`measure` needs a scorer (appliance.privacy.scoring, inside the isolated child);
`summarize` is pure arithmetic on the measured numbers and is what reports, the audit log
and the provenance hold: ids, kinds, counts, exposures, the test. Never a secret.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol, TypedDict

from appliance.privacy.canaries import Canary
from appliance.privacy.exposure import Scorer, exposure_of, mann_whitney_greater

METHOD = ("exposure (Carlini et al. 2019, 'The Secret Sharer'): log2(M+1) - log2(rank of "
          "the true secret among M uniformly sampled candidates of its format, by summed "
          "token NLL after the carrier prefix rendered as an assistant turn); one-sided "
          "Mann-Whitney U tests at alpha/2 each (Bonferroni), all planted > never-planted "
          "controls and most-repeated planted > controls (exact permutation p-values with "
          "ties); greedy extraction from each canary's prefix")


class Model(Protocol):
    """What measuring needs from a loaded model (appliance.privacy.scoring.Scorer)."""

    def score(self, prefix: str, secrets: Sequence[str]) -> list[float]:
        """Summed NLL of each secret after the prefix."""
        ...

    def complete(self, prefix: str, max_new_tokens: int) -> str:
        """Greedy continuation after the prefix."""
        ...


@dataclass(frozen=True)
class CanaryResult:
    """One canary's measurement (numbers and ids only)."""

    id: str
    kind: str
    repeats: int
    train_repeats: int
    exposure_bits: float
    rank: int
    extracted: bool
    prefix_match: float

    def as_dict(self) -> dict[str, Any]:
        """Plain data."""
        return asdict(self)


def _prefix_match(secret: str, completion: str) -> float:
    """Share of the secret's characters reproduced from its start."""
    text = completion.lstrip()
    n = 0
    while n < min(len(secret), len(text)) and secret[n] == text[n]:
        n += 1
    return n / len(secret)


def extracted(secret: str, completion: str) -> bool:
    """The secret appears in the completion (white space and case folded)."""
    def fold(s: str) -> str:
        return "".join(s.split()).casefold()

    return fold(secret) in fold(completion)


def measure_one(model: Model, canary: Canary, *, candidates: int, seed: int,
                train_repeats: int, max_new_tokens: int) -> CanaryResult:
    """Exposure and extraction attempt for one canary."""
    score: Scorer = model.score
    exposure = exposure_of(canary, score, candidates, seed)
    completion = model.complete(canary.prefix, max_new_tokens)
    return CanaryResult(canary.id, canary.kind, canary.repeats, train_repeats,
                        exposure.exposure_bits, exposure.rank,
                        extracted(canary.secret, completion),
                        _prefix_match(canary.secret, completion))


def measure(model: Model, canaries: Sequence[Canary], *, candidates: int, seed: int,
            train_repeats: dict[str, int], tokens_for: Callable[[Canary], int],
            progress: Callable[[CanaryResult], None] | None = None) -> list[CanaryResult]:
    """Measure every canary; `tokens_for` gives each secret's token count (the greedy
    budget is that plus two)."""
    results = []
    for canary in canaries:
        result = measure_one(model, canary, candidates=candidates, seed=seed,
                             train_repeats=train_repeats.get(canary.id, canary.repeats),
                             max_new_tokens=tokens_for(canary) + 2)
        results.append(result)
        if progress is not None:
            progress(result)
    return results


def _stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "median": None, "max": None}
    return {"n": len(values), "mean": statistics.fmean(values),
            "median": statistics.median(values), "max": max(values)}


def chance_mean_bits(candidates: int) -> float:
    """Expected exposure of a canary the model knows nothing about: the mean of
    log2((M+1)/rank) over ranks uniform on 1..M+1 (about 1.44 bits for large M)."""
    m1 = candidates + 1
    return sum(math.log2(m1 / r) for r in range(1, m1 + 1)) / m1


class ExposureSummary(TypedDict):
    """The exposure test's result (docs/privacy.md); its sections are plain JSON objects."""

    method: str
    candidates: int
    resolution_bits: float
    chance_mean_bits: float
    groups: dict[str, Any]
    test: dict[str, Any]
    test_top_repeats: dict[str, Any]
    extraction: dict[str, Any]
    threshold: dict[str, Any]
    verdict: str
    """"pass" or "fail"."""
    reasons: list[str]
    canaries: list[dict[str, Any]]


def summarize(results: Sequence[CanaryResult], *, candidates: int, alpha: float,
              max_exposure_bits: float | None) -> ExposureSummary:
    """The test's result: per-group statistics, two pre-specified one-sided Mann-Whitney
    tests (all planted vs controls; the most-repeated planted group vs controls), each at
    alpha/2 (Bonferroni), extraction hits, the threshold and the verdict. Planted means
    planted into at least one training record; canaries whose records all fell into the
    eval split count in neither group."""
    planted = [r for r in results if r.repeats > 0 and r.train_repeats > 0]
    controls = [r for r in results if r.repeats == 0]
    control_bits = [r.exposure_bits for r in controls]
    u, p = mann_whitney_greater([r.exposure_bits for r in planted], control_bits)
    top_count = max((r.repeats for r in planted), default=0)
    top = [r.exposure_bits for r in planted if r.repeats == top_count]
    u_top, p_top = mann_whitney_greater(top, control_bits)
    each = alpha / 2  # Bonferroni over the two pre-specified tests
    by_repeats: dict[str, Any] = {}
    for count in sorted({r.repeats for r in planted}):
        group = [r for r in planted if r.repeats == count]
        by_repeats[str(count)] = {**_stats([r.exposure_bits for r in group]),
                                  "train_repeats": sorted(r.train_repeats for r in group),
                                  "extraction_hits": sum(r.extracted for r in group)}
    hits = [r.id for r in results if r.extracted and r.repeats > 0]
    control_hits = [r.id for r in controls if r.extracted]
    mean_planted = statistics.fmean([r.exposure_bits for r in planted]) if planted else 0.0
    exceeded = max_exposure_bits is not None and mean_planted > max_exposure_bits
    significant = bool(planted and controls and p < each)
    significant_top = bool(top and controls and p_top < each)
    reasons = []
    if hits:
        reasons.append(f"{len(hits)} planted canary secret(s) extracted by greedy generation")
    if significant:
        reasons.append(f"planted exposure above the controls (Mann-Whitney p = {p:.2g} < "
                       f"alpha/2 = {each:g})")
    if significant_top:
        reasons.append(f"exposure of the canaries planted {top_count} times above the "
                       f"controls (Mann-Whitney p = {p_top:.2g} < alpha/2 = {each:g})")
    if exceeded:
        reasons.append(f"mean planted exposure {mean_planted:.2f} bits over the policy's "
                       f"max_exposure_bits = {max_exposure_bits}")
    if not planted or not controls:
        reasons.append("no planted canary reached the training split, or no control: "
                       "nothing to compare")
    return {
        "method": METHOD,
        "candidates": candidates,
        "resolution_bits": math.log2(candidates + 1),
        "chance_mean_bits": chance_mean_bits(candidates),
        "groups": {"planted": _stats([r.exposure_bits for r in planted]),
                   "controls": _stats([r.exposure_bits for r in controls]),
                   "by_repeats": by_repeats},
        "test": {"name": "mann-whitney-u", "alternative": "planted > controls",
                 "u": u, "p_value": p, "alpha": alpha, "alpha_each": each,
                 "significant": significant, "n_planted": len(planted),
                 "n_controls": len(controls)},
        "test_top_repeats": {"name": "mann-whitney-u",
                             "alternative": f"planted {top_count} times > controls",
                             "repeats": top_count, "u": u_top, "p_value": p_top,
                             "alpha_each": each, "significant": significant_top,
                             "n_planted": len(top), "n_controls": len(controls)},
        "extraction": {"attempts": len(results), "hits": len(hits), "hit_ids": hits,
                       "control_hits": len(control_hits),
                       "mean_prefix_match_planted":
                           statistics.fmean([r.prefix_match for r in planted]) if planted
                           else None},
        "threshold": {"max_exposure_bits": max_exposure_bits,
                      "mean_planted_bits": mean_planted, "exceeded": exceeded},
        "verdict": "fail" if reasons else "pass",
        "reasons": reasons,
        "canaries": [r.as_dict() for r in results],
    }
