"""Policy for the privacy check of trained adapters."""

from __future__ import annotations

from pydantic import Field

from appliance.policy._base import Section


class PrivacyPolicy(Section):
    """Canary exposure measurement (Carlini et al., The Secret Sharer) before signing."""

    check_before_signing: bool = False
    """Run the exposure test on every trained adapter before it is signed."""
    max_exposure_bits: float | None = Field(default=None, ge=0)
    """Refuse to sign when a scrubbed canary's exposure exceeds this (None: record only)."""
