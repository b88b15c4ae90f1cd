"""The evaluation gates: the policy's `[evaluation]` limits applied to a finished run's
numbers, before anything is signed. Plain Python (the parent runs it; no torch).

Checks: the held-out loss must not rise (more than evaluation.max_eval_loss_rise), the
perplexity on the shipped general-text set may rise at most
evaluation.max_general_perplexity_rise, the share of generations matching the recipe's
format must reach evaluation.min_format_compliance (the regular expression's share and the
JSON Schema's share are checked separately, each against it), exact matches with the reference
answers evaluation.min_exact_match, repeated-sampling consistency evaluation.min_consistency,
and the generations' distinct-bigram share evaluation.min_distinct_2 (a repetition guard).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import Any

from appliance.policy.evaluation import EvaluationPolicy


def distinct_n(texts: list[str], n: int = 2) -> float | None:
    """Distinct word n-grams over all n-grams of `texts` (None: no n-gram at all)."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        words = text.split()
        grams.extend(tuple(words[i:i + n]) for i in range(len(words) - n + 1))
    return len(set(grams)) / len(grams) if grams else None


def format_compliance(texts: list[str], pattern: str | None) -> float | None:
    """Share of `texts` that fully match `pattern` (None: no pattern, empty, or no text)."""
    if not pattern or not texts:
        return None
    compiled = re.compile(pattern, re.DOTALL)
    return sum(1 for t in texts if compiled.fullmatch(t.strip())) / len(texts)


def schema_compliance(texts: list[str], schema: dict[str, Any] | None) -> float | None:
    """Share of `texts` that are one JSON document valid against the JSON Schema `schema`
    (None: no schema or no text). References are resolved within the schema only: the
    validator never fetches anything."""
    if not schema or not texts:
        return None
    from jsonschema.validators import validator_for
    from referencing.exceptions import Unresolvable

    validator = validator_for(schema)(schema)
    valid = 0
    for text in texts:
        try:
            document = json.loads(text.strip())
        except ValueError:
            continue
        with contextlib.suppress(Unresolvable):  # a $ref outside it: never fetched
            valid += bool(validator.is_valid(document))
    return valid / len(texts)


def _rise(before: float, after: float) -> float:
    return (after - before) / before if before else 0.0


def verdict(limits: EvaluationPolicy, *, eval_before: Mapping[str, Any],
            eval_after: Mapping[str, Any], general_before: Mapping[str, Any] | None,
            general_after: Mapping[str, Any] | None, samples: list[dict[str, Any]],
            format_regex: str | None,
            format_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every check with its numbers; `passed` is False when one fails (numbers only, never
    text: this goes into the signed report and the provenance)."""
    checks: list[dict[str, Any]] = []
    completions = [str(x.get("completion", "")) for x in samples]

    def check(limit: str, threshold: float, value: float, ok: bool, detail: str) -> None:
        checks.append({"limit": f"evaluation.{limit}", "threshold": threshold,
                       "value": round(value, 6), "passed": ok, "detail": detail})

    before, after = float(eval_before["loss"]), float(eval_after["loss"])
    rise = _rise(before, after)
    check("max_eval_loss_rise", limits.max_eval_loss_rise, rise,
          rise <= limits.max_eval_loss_rise,
          f"held-out loss {before:.4f} -> {after:.4f} ({rise:+.1%}, limit "
          f"+{limits.max_eval_loss_rise:.1%})")
    if general_before and general_after:
        ppl_b, ppl_a = float(general_before["perplexity"]), float(general_after["perplexity"])
        ppl_rise = _rise(ppl_b, ppl_a)
        check("max_general_perplexity_rise", limits.max_general_perplexity_rise, ppl_rise,
              ppl_rise <= limits.max_general_perplexity_rise,
              f"general-text perplexity {ppl_b:.2f} -> {ppl_a:.2f} ({ppl_rise:+.1%}, limit "
              f"+{limits.max_general_perplexity_rise:.1%})")
    compliance = format_compliance(completions, format_regex)
    if compliance is not None:
        check("min_format_compliance", limits.min_format_compliance, compliance,
              compliance >= limits.min_format_compliance,
              f"format compliance {compliance:.0%} of {len(completions)} generations (limit "
              f"{limits.min_format_compliance:.0%})")
    schema_share = schema_compliance(completions, format_schema)
    if schema_share is not None:
        check("min_format_compliance", limits.min_format_compliance, schema_share,
              schema_share >= limits.min_format_compliance,
              f"JSON Schema compliance {schema_share:.0%} of {len(completions)} generations "
              f"(limit {limits.min_format_compliance:.0%})")
    if samples:
        exact = sum(1 for x in samples if x.get("exact_match")) / len(samples)
        check("min_exact_match", limits.min_exact_match, exact,
              exact >= limits.min_exact_match,
              f"exact match {exact:.0%} of {len(samples)} generations (limit "
              f"{limits.min_exact_match:.0%})")
    consistent = [float(x["consistency"]) for x in samples if "consistency" in x]
    consistency = sum(consistent) / len(consistent) if consistent else None
    if consistency is not None:
        check("min_consistency", limits.min_consistency, consistency,
              consistency >= limits.min_consistency,
              f"consistency {consistency:.0%} over {len(consistent)} prompts (limit "
              f"{limits.min_consistency:.0%})")
    distinct = distinct_n(completions)
    if distinct is not None:
        check("min_distinct_2", limits.min_distinct_2, distinct,
              distinct >= limits.min_distinct_2,
              f"distinct bigrams {distinct:.2f} in {len(completions)} generations (limit "
              f"{limits.min_distinct_2:.2f})")
    return {"passed": all(c["passed"] for c in checks), "enforced": limits.enforce,
            "checks": checks,
            "metrics": {"eval_loss_rise": rise, "format_compliance": compliance,
                        "schema_compliance": schema_share,
                        "consistency": consistency,
                        "distinct_2": distinct,
                        "general_perplexity_before": (general_before or {}).get("perplexity"),
                        "general_perplexity_after": (general_after or {}).get("perplexity")}}


def refusal(result: dict[str, Any]) -> str:
    """One line naming each failed limit and its numbers."""
    failed = [c for c in result["checks"] if not c["passed"]]
    return "; ".join(f"{c['limit']}: {c['detail']}" for c in failed)
