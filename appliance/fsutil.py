"""Atomic, durable file writes: a temp file in the target directory, fsync, rename, fsync dir.

A crash at any moment leaves either the old file or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


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

    On an exception the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def atomic_write_bytes(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably."""
    with atomic_writer(path, mode) as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str, mode: int = 0o600) -> None:
    """Replace `path` with UTF-8 `text` atomically and durably."""
    atomic_write_bytes(path, text.encode("utf-8"), mode)
