"""The `appliance` command line: argparse, one module per command group, lazy imports.

Each module in COMMAND_MODULES exposes `register(subparsers, common)`; its handlers receive
the parsed arguments and return an exit code. Handlers call the service layer only. Every
ApplianceError becomes one line on stderr and its exit code (docs/interface.md); a traceback
only with --debug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence

from appliance import __version__
from appliance.cli._common import failed
from appliance.errors import EXIT_BAD_INPUT, EXIT_FAILED, ApplianceError, PolicyError
from appliance.fsutil import is_no_space, no_space

COMMAND_MODULES = (
    "appliance.cli.policy_cmd",
    "appliance.cli.doctor_cmd",
    "appliance.cli.init_cmd",
    "appliance.cli.audit_cmd",
    "appliance.cli.verify_cmd",
    "appliance.cli.dataset_cmd",
    "appliance.cli.scrub_cmd",
    "appliance.cli.model_cmd",
    "appliance.cli.train_cmd",
    "appliance.cli.tui_cmd",
    "appliance.cli.demo_cmd",
    "appliance.cli.export_cmd",
    "appliance.cli.privacy_cmd",
    "appliance.cli.generate_cmd",
    "appliance.cli.chat_cmd",
)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_BAD_INPUT)


def _common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after the command name."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", metavar="DIR", default=argparse.SUPPRESS,
                        help="the appliance home (default: $APPLIANCE_HOME, else the user "
                             "data directory)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks on errors")
    common.add_argument("--passphrase-file", metavar="FILE", default=argparse.SUPPRESS,
                        help="read the passphrase from FILE (else $APPLIANCE_PASSPHRASE_FILE, "
                             "else a prompt)")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every command group registered."""
    common = _common_options()
    parser = _Parser(prog="appliance", parents=[common],
                     description="Air-gapped secure training appliance.")
    parser.add_argument("--version", action="version", version=f"appliance {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub, common)
    return parser


def _report(exc: ApplianceError, args: argparse.Namespace) -> None:
    if isinstance(exc, PolicyError) and exc.problems:
        for problem in exc.problems:
            sys.stderr.write(problem + "\n")
    failed(args, exc.line(), exc.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `appliance` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return int(handler(args))
    except ApplianceError as exc:
        if debug:
            traceback.print_exc()
        _report(exc, args)
        return exc.exit_code
    except KeyboardInterrupt:
        failed(args, "interrupted", 130)
        return 130
    except Exception as exc:  # the last line of defence: still one line, no traceback
        if debug:
            traceback.print_exc()
        if is_no_space(exc):  # a full disk a writer did not name itself
            _report(no_space(getattr(exc, "filename", None) or "the disk"), args)
            return EXIT_FAILED
        failed(args, f"internal error: {type(exc).__name__} (run again with --debug for the "
                     "traceback and report it)", EXIT_FAILED)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
