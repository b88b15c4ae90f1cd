"""`appliance demo [--home DIR]`: the embedded default, end to end."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.cli._common import add_command, passphrase, passphrase_file, print_json
from appliance.errors import EXIT_FAILED, EXIT_OK


def _stage(name: str, detail: str) -> None:
    sys.stderr.write(f"[{name:>7}] {detail}\n")
    sys.stderr.flush()


def _demo(args: argparse.Namespace) -> int:
    from appliance.cli.train_cmd import _progress
    from appliance.service.demo import demo_home, demo_passphrase_file, run_demo

    home = demo_home(getattr(args, "home", None))
    _stage("demo", f"workspace {home.root}")
    secret = passphrase(args, file=demo_passphrase_file(home, passphrase_file(args)))
    result = run_demo(home, passphrase=secret, on_stage=_stage, on_event=_progress)
    print_json(result)
    if not args.no_tui and sys.stdin.isatty() and sys.stdout.isatty():
        from appliance.tui.app import ApplianceConsole

        ApplianceConsole(home, debug=bool(getattr(args, "debug", False))).run()
        print_json(result)  # the promised JSON line (docs/interface.md) stays last
    return EXIT_OK if result["verified"] else EXIT_FAILED


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `demo` command."""
    parser = add_command(sub, common, "demo", "the whole pipeline on the shipped demo data "
                         "and default base model, ending in a verified artifact")
    parser.add_argument("--no-tui", action="store_true",
                        help="do not open the operator console afterwards (a terminal opens it)")
    parser.set_defaults(handler=_demo)
