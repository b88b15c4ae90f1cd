"""Reading passphrases: a non-echoing prompt or a file, never a command-line value or the
content of an environment variable (docs/interface.md)."""

from __future__ import annotations

import os
import re
import select
import stat
import sys
import time
from collections.abc import Callable
from pathlib import Path

from appliance.errors import PassphraseError
from appliance.fsutil import open_regular, read_capped

PASSPHRASE_FILE_ENV = "APPLIANCE_PASSPHRASE_FILE"  # noqa: S105 (a variable name)
MIN_LENGTH = 8
MAX_BYTES = 4096
"""Longest passphrase read (a file of /dev/zero is refused after this many bytes)."""
PIPE_TIMEOUT_S = 30.0
"""How long a passphrase pipe (/dev/fd/N) may take to deliver its end."""
INHERITED_FD = re.compile(r"/(?:dev|proc/self)/fd/[0-9]+")
"""Paths that name an inherited file descriptor; a pipe is accepted only through these."""
_FILES_READ: list[Path] = []

Passphrase = bytes | Callable[[], bytes]
"""What the services take: the passphrase, or the CLI's way to ask for it
(`cli._common.passphrase`), which a service calls once it needs the secret: after its input
checks, so bad input is named before anyone is prompted."""


def resolve(passphrase: Passphrase) -> bytes:
    """The passphrase's bytes (asking for them now, if that was left to this moment)."""
    return passphrase() if callable(passphrase) else passphrase


def files_read() -> tuple[Path, ...]:
    """The passphrase files this process read: secrets no sandboxed child may see."""
    return tuple(_FILES_READ)


def _strip_newline(data: bytes) -> bytes:
    if data.endswith(b"\r\n"):
        return data[:-2]
    return data[:-1] if data.endswith(b"\n") else data


def _from_file(path: Path) -> bytes:
    """A passphrase file: a regular file only its owner can access (as ssh insists for
    keys), or an inherited pipe named /dev/fd/N (how the console hands one to a child).
    Anything else (a FIFO on disk, /dev/zero, a socket) is refused before it is read;
    either way at most MAX_BYTES are read."""
    where = str(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise PassphraseError(f"cannot read the passphrase file: {exc.strerror}", where=where,
                              hint="check --passphrase-file") from None
    if stat.S_ISFIFO(mode) and INHERITED_FD.fullmatch(where):
        return _strip_newline(_read_pipe(path))
    with open_regular(path, error=PassphraseError, what="the passphrase file") as handle:
        access = os.fstat(handle.fileno()).st_mode & 0o077
        if access:
            raise PassphraseError(f"the passphrase file is accessible by group or others "
                                  f"(mode {stat.S_IMODE(mode):04o})", where=where,
                                  hint=f"chmod 600 {where}")
        data = read_capped(handle, MAX_BYTES, what="the passphrase file", where=where,
                           error=PassphraseError)
    return _strip_newline(data)


def _read_pipe(path: Path) -> bytes:
    """Read an inherited pipe to its end: at most MAX_BYTES, within PIPE_TIMEOUT_S."""
    where = str(path)
    deadline = time.monotonic() + PIPE_TIMEOUT_S
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise PassphraseError("timed out waiting for the passphrase pipe",
                                      where=where, hint="write the passphrase and close it")
            chunk = os.read(fd, MAX_BYTES + 1 - size)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:
                raise PassphraseError(f"the passphrase is longer than {MAX_BYTES} bytes",
                                      where=where, hint="use a shorter passphrase")
    except BlockingIOError:  # pragma: no cover - select said readable
        raise PassphraseError("cannot read the passphrase pipe", where=where) from None
    finally:
        os.close(fd)


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
        if Path(name).absolute() not in _FILES_READ:
            _FILES_READ.append(Path(name).absolute())
        secret = _from_file(Path(name))
    elif sys.stdin.isatty():
        secret = _prompt(prompt, confirm)
    else:
        raise PassphraseError("no passphrase: standard input is not a terminal",
                              hint=f"pass --passphrase-file FILE or set {PASSPHRASE_FILE_ENV}")
    if not secret:
        raise PassphraseError("the passphrase is empty", hint="use a non-empty passphrase")
    if len(secret) > MAX_BYTES:
        raise PassphraseError(f"the passphrase is longer than {MAX_BYTES} bytes",
                              hint="use a shorter passphrase")
    if check_strength and len(secret) < MIN_LENGTH:
        raise PassphraseError(f"the passphrase is shorter than {MIN_LENGTH} characters",
                              hint="choose a longer passphrase")
    return secret


def read_new_passphrase(file: str | os.PathLike[str] | None, prompt: str) -> bytes:
    """A new passphrase from `file` or a confirmed prompt; never from
    $APPLIANCE_PASSPHRASE_FILE, which holds the current one."""
    if file:
        return read_passphrase(file, check_strength=True)
    if not sys.stdin.isatty():
        raise PassphraseError("no new passphrase: standard input is not a terminal",
                              hint="pass the new passphrase in a file (see --help)")
    import getpass

    first = getpass.getpass(prompt)
    if getpass.getpass("Repeat it: ") != first:
        raise PassphraseError("the passphrases do not match", hint="run the command again")
    secret = first.encode("utf-8")
    if len(secret) < MIN_LENGTH:
        raise PassphraseError(f"the passphrase is shorter than {MIN_LENGTH} characters",
                              hint="choose a longer passphrase")
    return secret
