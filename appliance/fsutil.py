"""Files, the one way: atomic writes, safe reads, bounded parsing, and a full disk.

- Writes: a temp file in the target directory, fsync, rename, fsync dir. A crash at any
  moment leaves either the old file or the new one, never a half-written file; a full disk
  is `NoSpaceError` ("no space left on ...") after the temp file is removed.
- Reads of anything from outside (or planted in the home): regular files only, refused
  before they are opened otherwise (a FIFO would hang, a device could act on open), with a
  size cap.
- JSON and TOML from outside: strict UTF-8, nesting capped, lone surrogates refused; every
  problem is one `ParseProblem` the caller turns into its own error with a location.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from appliance.errors import ApplianceError, NoSpaceError

NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
"""A full file system, a full quota, or RLIMIT_FSIZE: all mean "no room to write"."""


def is_no_space(exc: BaseException) -> bool:
    """True when `exc` is an OSError saying there is no room to write."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def no_space(where: str | Path, what: str | None = None) -> NoSpaceError:
    """The one error for a full disk: `no space left on <what> <where>`."""
    return NoSpaceError(f"no space left on {what + ' ' if what else ''}{where}")


@contextlib.contextmanager
def space_checked(where: str | Path, what: str | None = None) -> Iterator[None]:
    """Turn an out-of-space OSError raised in the block into NoSpaceError naming `where`."""
    try:
        yield
    except OSError as exc:
        if is_no_space(exc):
            raise no_space(where, what) from None
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path, mode: int = 0o600) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces `path` atomically when the block exits cleanly.

    On an exception the temp file is removed and `path` is untouched; a full disk is
    NoSpaceError naming `path`.
    """
    path = Path(path)
    with space_checked(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                        dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_no_space(exc):
            raise no_space(path) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with UTF-8 `text` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)


# --- reading outside input ----------------------------------------------------------------
MAX_DEPTH = 64
"""Deepest JSON/TOML nesting any reader accepts (real documents stay below 10)."""
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class ParseProblem(ValueError):
    """Outside text that cannot be parsed within the limits; callers re-raise it as their
    own ApplianceError with a location."""


def kind_of(mode: int) -> str:
    """A readable name for a file type that is not a regular file."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def _refusal(error: type[ApplianceError], path: Path, mode: int) -> ApplianceError:
    if stat.S_ISDIR(mode):
        return error("is a directory, expected a file", where=str(path),
                     hint="pass the path of a file")
    return error(f"is {kind_of(mode)}, not a regular file; refused before opening it",
                 where=str(path), hint="pass a regular file")


@contextlib.contextmanager
def open_regular(path: str | Path, *, error: type[ApplianceError],
                 what: str = "the file") -> Iterator[BinaryIO]:
    """Open a regular file for reading, refusing FIFOs, devices, sockets and directories
    before they are opened (a FIFO would block, a device could have effects on open).

    The file is opened non-blocking and checked again with fstat, so a swap between the
    check and the open is refused too. Every problem is `error` naming `what` and the path.
    """
    path = Path(path)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise _refusal(error, path, before.st_mode)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"cannot read {what}: no such file", where=str(path),
                    hint="check the path") from None
    except OSError as exc:
        raise error(f"cannot read {what}: {exc.strerror}", where=str(path),
                    hint="check the path and its permissions") from None
    handle = os.fdopen(fd, "rb")
    with handle:
        after = os.fstat(fd)
        if not stat.S_ISREG(after.st_mode):
            raise _refusal(error, path, after.st_mode)
        if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
            raise error("the file was replaced while it was being opened", where=str(path),
                        hint="run the command again once nothing is changing it")
        os.set_blocking(fd, True)
        yield handle


def read_capped(handle: BinaryIO, max_bytes: int, *, what: str, where: str,
                error: type[ApplianceError]) -> bytes:
    """At most `max_bytes` from `handle`; `error` when there is more."""
    try:
        data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", where=where) from None
    if len(data) > max_bytes:
        raise error(f"{what} is larger than the limit of {max_bytes} bytes", where=where,
                    hint="pass a smaller file")
    return data


def read_regular(path: str | Path, *, max_bytes: int, what: str = "the file",
                 error: type[ApplianceError]) -> bytes:
    """The whole content of a regular file of at most `max_bytes` (see open_regular)."""
    with open_regular(path, error=error, what=what) as handle:
        return read_capped(handle, max_bytes, what=what, where=str(path), error=error)


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """ParseProblem if lists/objects in `value` nest deeper than `max_depth`."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > max_depth:
            raise ParseProblem(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, dict | list))


def _check_strings(value: Any) -> None:
    """ParseProblem if any string holds a lone surrogate (not encodable as UTF-8)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ParseProblem(f"a string holds a lone surrogate "
                                   f"(\\u{ord(item[exc.start]):04x}), which is not valid "
                                   "Unicode") from None
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ParseProblem(f"duplicate key {key!r}")
        out[key] = value
    return out


def loads_json(data: bytes | bytearray | str, *, max_depth: int = MAX_DEPTH,
               unique_keys: bool = False) -> Any:
    """Parse outside JSON: strict UTF-8, nesting capped, lone surrogates and (optionally)
    duplicate keys refused. Every problem is one ParseProblem with a readable message."""
    if isinstance(data, str):
        text = data
    else:
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseProblem(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        value = json.loads(text, object_pairs_hook=_unique_object if unique_keys else None)
    except RecursionError:
        raise ParseProblem(f"nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise ParseProblem(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # ParseProblem from the hook, or an over-long integer
        raise ParseProblem(str(exc)) from None
    if isinstance(value, dict | list):
        check_depth(value, max_depth)
    if _SURROGATE_ESCAPE.search(text):
        _check_strings(value)
    return value


def loads_toml(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Parse outside TOML with nesting capped; every problem is one ParseProblem."""
    import tomllib

    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise ParseProblem(f"nested deeper than {max_depth} levels") from None
    except tomllib.TOMLDecodeError as exc:
        raise ParseProblem(str(exc)) from None
    check_depth(value, max_depth)
    return value


def decode_utf8(data: bytes) -> str:
    """UTF-8 text (a leading BOM dropped); ParseProblem naming the byte otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseProblem(f"not valid UTF-8 (byte {exc.start})") from None
