"""Small helpers shared by command modules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from appliance.home import Home, resolve_home


def home_of(args: argparse.Namespace) -> Home:
    """The home selected by --home / $APPLIANCE_HOME / the platform default."""
    return resolve_home(getattr(args, "home", None))


def passphrase_file(args: argparse.Namespace) -> str | None:
    """The --passphrase-file value, if given."""
    value = getattr(args, "passphrase_file", None)
    return str(value) if value else None


def ask_passphrase(args: argparse.Namespace, *, prompt: str = "Passphrase: ",
                   file: str | None = None, confirm: bool = False,
                   check_strength: bool = False) -> bytes:
    """The passphrase now, the one way the CLI reads it: from `file` or --passphrase-file,
    else $APPLIANCE_PASSPHRASE_FILE, else a non-echoing prompt on the terminal."""
    from appliance.passphrase import read_passphrase

    return read_passphrase(file or passphrase_file(args), prompt=prompt, confirm=confirm,
                           check_strength=check_strength)


def _once(ask: Callable[[], bytes]) -> Callable[[], bytes]:
    kept: list[bytes] = []

    def asked() -> bytes:
        if not kept:
            kept.append(ask())
        return kept[0]

    return asked


def passphrase(args: argparse.Namespace, *, prompt: str = "Passphrase: ",
               file: str | None = None) -> Callable[[], bytes]:
    """The passphrase as the services take it (appliance.passphrase.Passphrase): read by
    `ask_passphrase` when the service first needs it, after its input checks (bad input is
    named before anyone is prompted), and only once."""
    return _once(lambda: ask_passphrase(args, prompt=prompt, file=file))


def new_passphrase(file: str | None, prompt: str) -> Callable[[], bytes]:
    """A new passphrase (a recipient's, or the next one of this home), asked when needed:
    from `file` or a confirmed prompt; never from $APPLIANCE_PASSPHRASE_FILE, which holds
    the current one."""
    from appliance.passphrase import read_new_passphrase

    return _once(lambda: read_new_passphrase(file, prompt))


def optional_passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase when one is available (a file, $APPLIANCE_PASSPHRASE_FILE or a
    terminal); otherwise None (the caller says what is lost, once the command succeeded)."""
    import os

    from appliance.passphrase import PASSPHRASE_FILE_ENV

    if passphrase_file(args) or os.environ.get(PASSPHRASE_FILE_ENV) or sys.stdin.isatty():
        return ask_passphrase(args)
    return None


def print_json(obj: Any) -> None:
    """One JSON object on one line of stdout, flushed: the CLI's one JSON-line writer (the
    `--json` results and every `--json-events` event)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def output(args: argparse.Namespace, result: Any, show: Callable[[], None]) -> None:
    """A command's result: with --json one JSON line (docs/interface.md names its fields),
    else `show()` writes it for a person."""
    if getattr(args, "json", False):
        print_json(result)
    else:
        show()


PREFIX = "appliance: "
"""What starts every error and warning line on stderr (docs/interface.md)."""


def warn(line: str) -> None:
    """One `appliance: ...` line on stderr (a warning, or the error of a failed command)."""
    sys.stderr.write(PREFIX + line + "\n")
    sys.stderr.flush()


def failed(args: argparse.Namespace | None, line: str, exit_code: int) -> None:
    """Report a failed command: its one line on stderr and, with --json or --json-events,
    a last JSON line `{"type": "failed", "error": LINE, "exit_code": N}` on stdout (how the
    console learns why a child job failed)."""
    warn(line)
    if args is not None and (getattr(args, "json", False) or getattr(args, "json_events", False)):
        print_json({"type": "failed", "error": line, "exit_code": exit_code})


def add_command(sub: Any, common: argparse.ArgumentParser, name: str,
                help_text: str) -> argparse.ArgumentParser:
    """Add a sub-command that also accepts the common options."""
    parser: argparse.ArgumentParser = sub.add_parser(name, parents=[common], help=help_text,
                                                     description=help_text)
    return parser


def add_group(sub: Any, common: argparse.ArgumentParser, name: str, help_text: str) -> Any:
    """Add a command group (`appliance NAME ACTION ...`); returns its action sub-parsers."""
    parser = add_command(sub, common, name, help_text)
    return parser.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True,
                                 parser_class=type(parser))
