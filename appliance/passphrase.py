"""Reading passphrases: a non-echoing prompt or a file, never a command-line value or the
content of an environment variable (docs/interface.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from appliance.errors import PassphraseError

PASSPHRASE_FILE_ENV = "APPLIANCE_PASSPHRASE_FILE"  # noqa: S105 (a variable name)
MIN_LENGTH = 8


def _from_file(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PassphraseError(f"cannot read the passphrase file: {exc.strerror}",
                              where=str(path), hint="check --passphrase-file") from None
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data


def _prompt(prompt: str, confirm: bool) -> bytes:
    import getpass

    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("Repeat the passphrase: ") != first:
        raise PassphraseError("the passphrases do not match", hint="run the command again")
    return first.encode("utf-8")


def read_passphrase(file: str | os.PathLike[str] | None = None, *, prompt: str = "Passphrase: ",
                    confirm: bool = False, check_strength: bool = False) -> bytes:
    """The passphrase from `file`, else `$APPLIANCE_PASSPHRASE_FILE`, else a prompt on a
    terminal. Raises PassphraseError when none can be had."""
    name = file or os.environ.get(PASSPHRASE_FILE_ENV)
    if name:
        secret = _from_file(Path(name))
    elif sys.stdin.isatty():
        secret = _prompt(prompt, confirm)
    else:
        raise PassphraseError("no passphrase: standard input is not a terminal",
                              hint=f"pass --passphrase-file FILE or set {PASSPHRASE_FILE_ENV}")
    if not secret:
        raise PassphraseError("the passphrase is empty", hint="use a non-empty passphrase")
    if check_strength and len(secret) < MIN_LENGTH:
        raise PassphraseError(f"the passphrase is shorter than {MIN_LENGTH} characters",
                              hint="choose a longer passphrase")
    return secret
