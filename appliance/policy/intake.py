"""Policy for dataset intake: validation, deduplication, split."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Section


class IntakePolicy(Section):
    """How raw fine-tuning files are validated before scrubbing."""

    on_invalid: Literal["drop", "abort"] = "abort"
    """A record that fails validation either aborts the import or is dropped and counted."""
    max_record_bytes: int = Field(default=65_536, ge=1, le=16 * 2**20)
    """Records larger than this (UTF-8 bytes) are invalid."""
    max_records: int = Field(default=10_000_000, ge=1)
    """Largest number of records in one import."""
    deduplicate: Literal["exact", "normalized"] = "normalized"
    """Remove duplicates exactly, or after folding white space and case."""
    split_seed: int = Field(default=0, ge=0)
    """Seed of the deterministic train/eval split."""
