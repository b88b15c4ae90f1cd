"""Canary generation and the exposure statistics (model-free parts)."""

from __future__ import annotations

import math

from appliance.patterns import luhn_ok
from appliance.privacy.canaries import make_canaries, plant
from appliance.privacy.exposure import exposure_of, mann_whitney_greater


def test_canaries_are_deterministic_distinct_and_include_controls():
    """Same seed, same canaries; secrets are distinct; controls are never planted."""
    a, b = make_canaries(7), make_canaries(7)
    assert a == b
    assert len({c.secret for c in a}) == len(a)
    assert {c.repeats for c in a} == {0, 1, 2, 4, 8, 16}
    assert all(luhn_ok(c.secret) for c in a if c.kind == "card")


def test_planting_inserts_each_canary_exactly_repeats_times():
    """A canary planted k times appears in k assistant turns; controls appear nowhere."""
    records = [{"messages": [{"role": "user", "content": f"q{i}"},
                             {"role": "assistant", "content": f"a{i}"}]} for i in range(40)]
    canaries = make_canaries(1)
    planted = plant(records, canaries, seed=3)
    text = [r["messages"][1]["content"] for r in planted]
    for canary in canaries:
        assert sum(canary.secret in t for t in text) == canary.repeats
    assert records[0]["messages"][1]["content"] == "a0"  # originals untouched
    assert all(r["messages"][0]["content"] == f"q{i}" for i, r in enumerate(planted))


def test_exposure_is_maximal_when_the_secret_is_most_likely():
    """A scorer that prefers the true secret gives exposure log2(M+1); one that dislikes it, 0."""
    canary = next(c for c in make_canaries(2) if c.kind == "ssn")

    def loves(prefix, secrets):
        return [0.0 if s == canary.secret else 5.0 for s in secrets]

    def hates(prefix, secrets):
        return [9.0 if s == canary.secret else 5.0 for s in secrets]

    high = exposure_of(canary, loves, candidates=255, seed=0)
    low = exposure_of(canary, hates, candidates=255, seed=0)
    assert high.exposure_bits == math.log2(256) and high.rank == 1
    assert low.exposure_bits == 0.0 and low.rank == 256


def test_mann_whitney_separates_shifted_samples_and_not_equal_ones():
    """The one-sided test finds a clear shift and no shift between identical samples."""
    _, p_shift = mann_whitney_greater([8, 9, 10, 11, 12], [1, 2, 3, 4, 5])
    _, p_same = mann_whitney_greater([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert p_shift < 0.01
    assert p_same > 0.4
