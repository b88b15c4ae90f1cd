"""`appliance doctor`."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli._common import add_command, home_of, output
from appliance.errors import EXIT_FAILED, EXIT_OK


def _doctor(args: argparse.Namespace) -> int:
    from appliance.doctor import as_dict
    from appliance.service.doctor import doctor

    checks = doctor(home_of(args))
    report = as_dict(checks)
    def show() -> None:
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.required else "warn")
            kind = "required" if check.required else "advisory"
            print(f"[{mark}] {check.name:<18} {kind:<8}  {check.detail}")
        print("ready" if report["ok"] else "NOT READY: fix the FAIL lines above")

    output(args, report, show)
    return EXIT_OK if report["ok"] else EXIT_FAILED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `doctor` command."""
    parser = add_command(sub, common, "doctor", "check this machine's readiness")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(handler=_doctor)
