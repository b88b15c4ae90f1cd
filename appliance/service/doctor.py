"""Doctor for the CLI and TUI."""

from __future__ import annotations

from appliance.doctor import Check, run_checks
from appliance.home import Home


def doctor(home: Home) -> list[Check]:
    """Every readiness check for this machine and home."""
    return run_checks(home)
