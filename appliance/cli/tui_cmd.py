"""`appliance tui`: the Textual operator console (Textual is imported inside the handler)."""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Any

from appliance.cli._common import add_command, home_of, warn
from appliance.errors import EXIT_OK, UsageError


def _tui(args: argparse.Namespace) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("appliance tui needs an interactive terminal",
                         hint="run it in a terminal; the CLI commands work without one")
    from appliance.tui.app import ApplianceConsole

    debug = bool(getattr(args, "debug", False))
    app = ApplianceConsole(home_of(args), debug=debug)
    app.run()
    if app.pending:
        warn(f"waiting for {', '.join(app.pending)} to finish…")
    for exc in app.kept:
        traceback.print_exception(exc)
    return app.return_code or EXIT_OK


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `tui` command."""
    parser = add_command(sub, common, "tui", "the keyboard-first operator console")
    parser.set_defaults(handler=_tui)
