"""Policy for artifact signatures."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Digest, Section


class SigningPolicy(Section):
    """How artifacts are signed and which keys are trusted to have signed them."""

    algorithm: Literal["ecdsa-p256"] = "ecdsa-p256"
    """Signature algorithm (OpenSSF model-signing v1.0 key mode: ECDSA P-256 with SHA-256)."""
    trust_home_key: bool = True
    """Trust the signing key this appliance home created at init."""
    trusted_keys: list[Digest] = Field(default_factory=list)
    """Other trusted public keys, by sha256 of their DER SubjectPublicKeyInfo."""
