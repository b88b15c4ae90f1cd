"""Policy for base models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Digest, Name, Section


class AllowedModel(Section):
    """One base model the policy allows, by content digest."""

    name: Name
    """A label for operators; the digest is what is checked."""
    digest: Digest
    """Root digest of the imported model (or sha256 of the GGUF file it was converted from)."""


class ModelsPolicy(Section):
    """Which base models may be trained, and how they may be loaded."""

    allowed: list[AllowedModel] = Field(default_factory=list)
    """Base models allowed by content digest."""
    allow_any: bool = False
    """Allow every imported model regardless of digest (development only)."""
    weights_format: Literal["safetensors"] = "safetensors"
    """Only safetensors weights are loaded; pickle formats are refused before parsing."""
    trust_remote_code: Literal[False] = False
    """Model repositories with custom code are refused. Cannot be enabled."""
    max_model_bytes: int = Field(default=64 * 2**30, ge=1)
    """Largest base model accepted on import."""
