"""Policy for the privacy check of trained adapters: canaries planted at import and their
exposure (Carlini et al., The Secret Sharer) measured before signing."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from appliance.policy._base import Section

CanaryKind = Literal["ssn", "card", "email", "name"]
Repeat = Annotated[int, Field(ge=1, le=64)]


def _default_kinds() -> list[CanaryKind]:
    return ["ssn", "email", "name"]



class PrivacyPolicy(Section):
    """Canary exposure measurement (Carlini et al., The Secret Sharer) before signing."""

    check_before_signing: bool = False
    """Run the exposure test on every trained adapter before it is signed (the dataset
    must have been imported with canaries)."""
    enforce: bool = True
    """When the check runs before signing, a failing verdict (an extraction hit, planted
    exposure significantly above the controls, or the mean over max_exposure_bits) refuses
    to sign. False: the verdict is recorded in the provenance only."""
    max_exposure_bits: float | None = Field(default=None, ge=0)
    """Fail when the mean exposure of the planted canaries exceeds this many bits (chance
    is about 1.3 bits at 31 candidates; None: no threshold, only the test and the
    extraction attempt)."""
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5)
    """Significance level of the one-sided Mann-Whitney U test (planted > controls)."""
    candidates: int = Field(default=31, ge=7, le=4095)
    """Sampled alternative secrets per canary (M); the resolution is log2(M + 1) bits."""
    plant_canaries: bool = False
    """Plant synthetic canaries into the raw records at import, before scrubbing (the
    canary list is kept sealed in the dataset's encrypted metadata)."""
    canary_seed: int | None = Field(default=None, ge=0)
    """Seed of the canary secrets and their placement (None: a fresh random seed per
    import, recorded sealed with the canaries)."""
    canary_repeats: list[Repeat] = Field(default_factory=lambda: [1, 4, 16], min_length=1)
    """How many records each planted canary goes into; one canary per kind and count."""
    canary_kinds: list[CanaryKind] = Field(default_factory=_default_kinds, min_length=1)
    """Kinds of secret planted: US SSN, card number, e-mail address, person name."""
    canary_controls: int = Field(default=3, ge=1, le=64)
    """Control canaries per kind: generated like the planted ones, never planted."""
