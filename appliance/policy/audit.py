"""Policy for the audit log."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Section


class AuditPolicy(Section):
    """The tamper-evident audit log."""

    redaction: Literal["patterns"] = "patterns"
    """Every value is passed through the scrubber's pattern detectors before it is written.
    Cannot be disabled."""
    checkpoint_interval: int = Field(default=64, ge=1, le=100_000)
    """Write a signed checkpoint at least every this many entries (and at every run
    boundary and clean shutdown)."""
