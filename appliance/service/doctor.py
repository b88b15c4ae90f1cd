"""Doctor for the CLI and TUI."""

from __future__ import annotations

from appliance.doctor import Check, as_dict, run_checks
from appliance.home import Home


def doctor(home: Home) -> list[Check]:
    """Every readiness check for this machine and home."""
    return run_checks(home)


def doctor_report(home: Home) -> dict[str, object]:
    """Doctor's checks as the `--json` document."""
    return as_dict(doctor(home))
