"""The guards, early stopping and evaluation gates on their own (plain floats, no torch):
each rule trips on its hostile input and stays quiet on ordinary numbers."""

from __future__ import annotations

import math

import pytest

from appliance.errors import RecipeError
from appliance.policy.evaluation import EvaluationPolicy
from appliance.train import gates
from appliance.train.recipe import GuardSettings, parse_recipe
from appliance.train.watch import EarlyStop, Guard


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf])
def test_guard_stops_on_a_non_finite_loss(loss: float) -> None:
    """A NaN or infinite loss trips the guard at the step it happens."""
    trip = Guard(GuardSettings()).check(loss, 1.0)
    assert trip is not None and trip.kind == "non_finite_loss"


def test_guard_stops_on_exploding_and_non_finite_gradients() -> None:
    """A gradient norm over guards.max_grad_norm, or not finite, trips; one under does not."""
    guard = Guard(GuardSettings(max_grad_norm=100.0))
    assert guard.check(2.0, 99.0) is None
    trip = guard.check(2.0, 101.0)
    assert trip is not None and trip.kind == "exploding_gradient" and "101" in trip.message
    nan_grad = guard.check(2.0, math.nan)
    assert nan_grad is not None and nan_grad.kind == "non_finite_gradient"


def test_guard_loss_spike_needs_a_full_window_and_the_factor() -> None:
    """A spike trips only over factor x the window's mean, once the window is full."""
    guard = Guard(GuardSettings(loss_spike_factor=3.0, spike_window=3))
    assert guard.check(10.0, 1.0) is None  # window not yet full: no reference
    for _ in range(2):
        assert guard.check(1.0, 1.0) is None
    assert guard.check(4.0 * 4, 1.0) is not None  # mean 4, limit 12
    assert guard.check(11.0, 1.0) is None


def test_early_stop_counts_evaluations_since_the_best() -> None:
    """The best is the lowest loss; patience counts evaluations without improvement."""
    watch = EarlyStop(patience=2)
    assert watch.update(2, 1.5) and watch.update(4, 1.2)
    assert not watch.update(6, 1.3) and not watch.exhausted
    assert not watch.update(8, 1.25) and watch.exhausted
    assert (watch.best_step, watch.best_loss) == (4, 1.2)
    again = EarlyStop(patience=2)
    again.load(watch.state())
    assert again.state() == watch.state()


def test_recipe_refuses_early_stopping_without_evaluations_and_a_bad_regex() -> None:
    """early_stopping needs eval.every > 0; format_regex must compile (exit 2, key named)."""
    base = {"base_model": "m", "dataset": "d"}
    with pytest.raises(RecipeError, match="eval: Value error, early_stopping"):
        parse_recipe({**base, "eval": {"early_stopping": True}})
    with pytest.raises(RecipeError, match="format_regex is not a valid"):
        parse_recipe({**base, "eval": {"format_regex": "(unclosed"}})


def _verdict(after: float, ppl_after: float = 10.0, completions: list[str] | None = None,
             regex: str | None = None, **limits: float) -> dict[str, object]:
    return gates.verdict(EvaluationPolicy(**limits), eval_before={"loss": 1.63},
                         eval_after={"loss": after}, general_before={"perplexity": 10.0},
                         general_after={"perplexity": ppl_after},
                         samples=[{"completion": c, "exact_match": c == "exact"}
                                  for c in completions or ["a fine varied answer here"]],
                         format_regex=regex)


def test_gates_refuse_a_rise_in_held_out_loss_naming_the_limit_and_numbers() -> None:
    """The privacy control's over-training (1.63 -> 5.7) fails max_eval_loss_rise."""
    result = _verdict(5.7)
    assert result["passed"] is False
    line = gates.refusal(result)
    assert "evaluation.max_eval_loss_rise" in line and "1.6300 -> 5.7000" in line
    assert _verdict(1.5)["passed"] is True


def test_gates_perplexity_format_and_repetition() -> None:
    """General perplexity over its allowed rise, output not matching the format, and looping
    output each fail their own limit."""
    assert "max_general_perplexity_rise" in gates.refusal(_verdict(1.5, ppl_after=13.0))
    assert _verdict(1.5, ppl_after=12.0)["passed"] is True
    fmt = _verdict(1.5, completions=['{"a": 1}', "no json"], regex=r"\{.*\}",
                   min_format_compliance=0.9)
    assert "min_format_compliance" in gates.refusal(fmt) and "50%" in gates.refusal(fmt)
    loop = _verdict(1.5, completions=["the the the the the the the the the"])
    assert "min_distinct_2" in gates.refusal(loop)
    assert gates.distinct_n(["a b c d"]) == 1.0


def test_gates_exact_match_and_consistency() -> None:
    """Exact match with the reference and sampled-answer consistency fail under their
    limits and are only checked for consistency when the recipe measured it."""
    result = _verdict(1.5, completions=["exact", "other words here"], min_exact_match=0.75)
    assert "min_exact_match" in gates.refusal(result) and "50%" in gates.refusal(result)
    assert "evaluation.min_consistency" not in {c["limit"] for c in result["checks"]}
    low = gates.verdict(EvaluationPolicy(min_consistency=0.8), eval_before={"loss": 1.0},
                        eval_after={"loss": 0.9}, general_before=None, general_after=None,
                        samples=[{"completion": "a b c", "consistency": 0.5},
                                 {"completion": "d e f", "consistency": 1.0}],
                        format_regex=None)
    assert "evaluation.min_consistency: consistency 75% over 2 prompts" in gates.refusal(low)


SCHEMA = {"type": "object", "required": ["ticket", "priority"],
          "properties": {"ticket": {"type": "integer"},
                         "priority": {"enum": ["low", "high"]}},
          "additionalProperties": False}


def test_gates_json_schema_compliance() -> None:
    """Answers that are not JSON, JSON of the wrong shape, and a document with an extra key
    fail the schema; the share is checked against min_format_compliance and reported."""
    good = '{"ticket": 7, "priority": "high"}'
    answers = [good, f"  {good}\n", "Sure! " + good, '{"ticket": "7", "priority": "high"}',
               '{"ticket": 7, "priority": "high", "note": "x"}', "[1, 2]"]
    assert gates.schema_compliance(answers, SCHEMA) == pytest.approx(2 / 6)
    assert gates.schema_compliance(answers, None) is None
    result = gates.verdict(EvaluationPolicy(min_format_compliance=0.5),
                           eval_before={"loss": 1.0}, eval_after={"loss": 0.9},
                           general_before=None, general_after=None,
                           samples=[{"completion": a} for a in answers], format_regex=None,
                           format_schema=SCHEMA)
    line = gates.refusal(result)
    assert result["passed"] is False
    assert "evaluation.min_format_compliance: JSON Schema compliance 33% of 6" in line
    assert result["metrics"]["schema_compliance"] == pytest.approx(2 / 6)
    ok = gates.verdict(EvaluationPolicy(min_format_compliance=1.0), eval_before={"loss": 1.0},
                       eval_after={"loss": 0.9}, general_before=None, general_after=None,
                       samples=[{"completion": good}], format_regex=None, format_schema=SCHEMA)
    assert ok["passed"] is True


def test_gates_schema_never_fetches_a_remote_reference() -> None:
    """A $ref to a URL is not resolved over the network: the answer just does not comply."""
    remote = {"$ref": "https://example.invalid/schema.json"}
    assert gates.schema_compliance(['{"a": 1}'], remote) == 0.0


def test_recipe_refuses_an_invalid_json_schema() -> None:
    """format_schema must be a valid JSON Schema (exit 2, key named); a TOML table is."""
    base = {"base_model": "m", "dataset": "d"}
    with pytest.raises(RecipeError, match="format_schema is not a valid JSON Schema"):
        parse_recipe({**base, "eval": {"format_schema": {"type": "no-such-type"}}})
    recipe = parse_recipe({**base, "eval": {"format_schema": SCHEMA}})
    assert recipe.eval.format_schema == SCHEMA
