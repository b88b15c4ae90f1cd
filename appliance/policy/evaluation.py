"""Policy for evaluation: early stopping during training and the limits that decide whether
a trained adapter is signed (held-out loss, general-text perplexity, format compliance,
repetition)."""

from __future__ import annotations

from pydantic import Field

from appliance.policy._base import Section


class EvaluationPolicy(Section):
    """Evaluation gates checked before signing, and early stopping."""

    enforce: bool = True
    """A run that fails a limit below is refused at signing (its adapter and checkpoints
    stay in the run directory for inspection). False: the verdict is recorded only."""
    max_eval_loss_rise: float = Field(default=0.0, ge=0.0)
    """Largest allowed relative rise of the held-out loss, after against before training
    (0.0: it must not rise at all)."""
    max_general_perplexity_rise: float = Field(default=0.25, ge=0.0)
    """Largest allowed relative rise of the perplexity on the shipped general-text set
    (0.25: at most 25% above the base model's)."""
    min_format_compliance: float = Field(default=0.0, ge=0.0, le=1.0)
    """Smallest share of held-out generations that satisfy the recipe's output format
    (eval.format_regex or eval.format_schema); applies when the recipe sets one."""
    min_exact_match: float = Field(default=0.0, ge=0.0, le=1.0)
    """Smallest share of held-out generations equal to their reference answer (after
    trimming white space)."""
    min_consistency: float = Field(default=0.0, ge=0.0, le=1.0)
    """Smallest mean consistency over the held-out prompts (recipe
    eval.consistency_samples: the share of k sampled answers equal to the most common
    one); applies when the recipe measures it."""
    min_distinct_2: float = Field(default=0.3, ge=0.0, le=1.0)
    """Smallest share of distinct word bigrams in the generated samples (a repetition
    guard: degenerate, looping output scores near 0)."""
    patience: int = Field(default=2, ge=1, le=100)
    """Early stopping (recipe eval.early_stopping): held-out evaluations in a row without
    improvement before the run stops and keeps its best checkpoint."""
    min_delta: float = Field(default=0.0, ge=0.0)
    """Smallest decrease of the held-out loss that counts as an improvement."""
