"""The exposure test's statistics and verdict (model-free), and the canary set's forms."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from appliance.privacy.canaries import CanarySet, make_canaries, placements, plant
from appliance.privacy.check import (
    CanaryResult,
    _prefix_match,
    chance_mean_bits,
    extracted,
    summarize,
)
from appliance.privacy.exposure import _midranks, mann_whitney_greater


def _result(i: int, repeats: int, bits: float, *, hit: bool = False,
            train: int | None = None) -> CanaryResult:
    return CanaryResult(f"ssn-{'r' + str(repeats) if repeats else 'control'}-{i}", "ssn",
                        repeats, repeats if train is None else train, bits, 1, hit, 0.0)


def _brute_p(xs: list[float], ys: list[float]) -> float:
    pooled = sorted([(v, 0) for v in xs] + [(v, 1) for v in ys])
    ranks, _ = _midranks(pooled)
    observed = sum(r for r, (_, g) in zip(ranks, pooled, strict=True) if g == 0)
    subsets = list(itertools.combinations(ranks, len(xs)))
    return sum(1 for s in subsets if sum(s) >= observed - 1e-9) / len(subsets)


def test_exact_mann_whitney_matches_enumeration_with_ties():
    """The exact p-value equals brute-force enumeration of the rank-sum distribution."""
    rng = random.Random(5)
    for _ in range(6):
        xs = [float(rng.randint(0, 5)) for _ in range(6)]
        ys = [float(rng.randint(0, 4)) for _ in range(7)]
        assert mann_whitney_greater(xs, ys)[1] == pytest.approx(_brute_p(xs, ys))


def test_exact_p_value_of_complete_separation_is_one_over_binomial():
    """Five values all above five others: p = 1 / C(10, 5)."""
    assert mann_whitney_greater([8, 9, 10, 11, 12], [1, 2, 3, 4, 5])[1] == \
        pytest.approx(1 / math.comb(10, 5))


def test_large_samples_use_the_normal_approximation():
    """Past the exact limit the p-value still separates shifted from equal samples."""
    xs, ys = [float(i % 7 + 3) for i in range(40)], [float(i % 7) for i in range(40)]
    assert mann_whitney_greater(xs, ys)[1] < 0.001
    assert mann_whitney_greater(ys, ys)[1] > 0.4


def test_chance_mean_is_about_1_44_bits():
    """A model that knows nothing gives mean exposure near log2(e) bits."""
    assert chance_mean_bits(4095) == pytest.approx(1 / math.log(2), abs=0.01)
    assert chance_mean_bits(31) < 1 / math.log(2)


def test_summary_passes_when_planted_look_like_controls():
    """Same exposures in both groups, no hit: pass, with every field a reader needs."""
    values = [0.5, 1.0, 1.5, 2.0, 0.2, 3.0, 1.1, 0.8, 1.4]
    results = [_result(i, (1, 4, 16)[i % 3], v) for i, v in enumerate(values)]
    results += [_result(10 + i, 0, v) for i, v in enumerate(values)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=3.0)
    assert out["verdict"] == "pass" and out["reasons"] == []
    assert out["test"]["p_value"] > 0.3 and out["resolution_bits"] == 5.0
    assert set(out["groups"]["by_repeats"]) == {"1", "4", "16"}
    assert out["groups"]["planted"]["n"] == 9 and out["groups"]["controls"]["n"] == 9


def test_summary_fails_on_significant_memorisation():
    """Planted exposures all above the controls: the test rejects and the verdict fails."""
    results = [_result(i, 16, 4.5 + i / 10) for i in range(6)]
    results += [_result(10 + i, 0, i / 5) for i in range(6)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=None)
    assert out["test"]["significant"] and out["verdict"] == "fail"
    assert "Mann-Whitney" in out["reasons"][0]


def test_summary_fails_on_an_extraction_hit_alone():
    """One greedy extraction of a planted secret fails the check whatever the statistics."""
    results = [_result(i, 4, 1.0, hit=(i == 0)) for i in range(4)]
    results += [_result(10 + i, 0, 1.0) for i in range(4)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=None)
    assert out["extraction"]["hits"] == 1 and out["verdict"] == "fail"
    assert not out["test"]["significant"]


def test_summary_fails_over_the_threshold():
    """Mean planted exposure above max_exposure_bits fails even without significance."""
    results = [_result(0, 4, 3.5), _result(1, 4, 3.5), _result(2, 0, 3.0), _result(3, 0, 4.0)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=3.0)
    assert out["threshold"]["exceeded"] and out["verdict"] == "fail"


def test_canaries_only_in_eval_count_in_neither_group():
    """A planted canary that reached no training record is no evidence either way."""
    results = [_result(0, 4, 5.0, train=0), _result(1, 0, 1.0)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=None)
    assert out["groups"]["planted"]["n"] == 0 and out["verdict"] == "fail"
    assert "nothing to compare" in out["reasons"][-1]


def test_extraction_match_folds_space_and_case():
    """A completion holding the secret (modulo spaces and case) is a hit; a near miss is not."""
    assert extracted("4111 2222 3333 4444", " 4111222233334444. I")
    assert extracted("Avery Abernathy", "avery abernathy.")
    assert not extracted("512-40-7731", "512-40-7730.")
    assert _prefix_match("512-40-7731", " 512-40-0000") == pytest.approx(7 / 11)


def test_canary_set_round_trips_and_its_summary_holds_no_secret():
    """as_dict/from_dict round-trip; the summary and digest reveal no secret."""
    canaries = make_canaries(9, repeats=(1, 4), kinds=("ssn", "email"), controls_per_kind=2)
    records = [{"instruction": "q", "output": f"a{i}"} for i in range(10)]
    where = placements(records, canaries, 9)
    planted = plant(records, canaries, 9)
    for canary in canaries:
        hits = [i for i, r in enumerate(planted) if canary.secret in r["output"]]
        assert hits == where.get(canary.id, [])
    cset = CanarySet(9, tuple(canaries), {k: len(v) for k, v in where.items()})
    assert CanarySet.from_dict(cset.as_dict()) == cset
    text = repr(cset.summary())
    assert all(c.secret not in text for c in canaries)
    assert cset.summary()["planted"] == 4 and cset.summary()["controls"] == 4
    with pytest.raises(ValueError):
        CanarySet.from_dict({"version": 2, "seed": 1, "canaries": [], "train_repeats": {}})


def test_audit_numbers_are_short_enough_to_survive_redaction():
    """Audit fields round floats, so a p-value never reads as a card number."""
    from appliance.audit.processors import scrub_text
    from appliance.service.privacy import audit_fields

    results = [_result(i, 4, 1.0 + i / 7) for i in range(4)]
    results += [_result(10 + i, 0, 1.3 - i / 9) for i in range(4)]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=None)
    out["canary_set"] = {"digest": "sha256:" + "0" * 64}
    fields = audit_fields(out)
    for value in fields.values():
        assert "REDACTED" not in scrub_text(str(value))
    assert fields["p_value"] == pytest.approx(out["test"]["p_value"], rel=1e-3)


def test_most_repeated_group_alone_can_fail_the_check():
    """Three canaries planted 16 times above every control fail the check through the
    second pre-specified test (p = 1/220 < alpha/2) even when the rest look like chance."""
    results = [_result(0, 16, 4.0), _result(1, 16, 4.0), _result(2, 16, 3.4)]
    results += [_result(3 + i, (1, 4)[i % 2], v) for i, v in enumerate([0.2, 1.2, 0.1,
                                                                        1.5, 0.3, 0.9])]
    results += [_result(20 + i, 0, v) for i, v in enumerate([2.7, 0.3, 0.2, 1.3, 1.7, 0.8,
                                                            2.0, 0.5, 0.2])]
    out = summarize(results, candidates=31, alpha=0.01, max_exposure_bits=None)
    assert not out["test"]["significant"]
    assert out["test_top_repeats"]["p_value"] == pytest.approx(1 / 220)
    assert out["test_top_repeats"]["significant"] and out["verdict"] == "fail"
