"""Policy for anything leaving the appliance."""

from __future__ import annotations

from typing import Literal

from appliance.policy._base import Section


class ExportPolicy(Section):
    """What may leave the appliance, and in which form."""

    datasets: Literal["never", "encrypted"] = "never"
    """Scrubbed datasets: never, or only as an encrypted vault file."""
    merged_weights: Literal["never", "after-verify"] = "never"
    """Merged base+adapter weights: never, or only after the adapter's signature verifies."""
    audit_bundle: Literal["allowed"] = "allowed"
    """The auditor's bundle (log, checkpoints, public keys, provenance) may always be exported."""
