"""The audit log on disk: JSON lines appended under an exclusive lock, fsynced.

Every writer (the CLI, the TUI, a training child) takes `flock` on `audit/.lock` before it
reads the tail and appends, so sequence numbers and chain links never interleave. Each line
carries `seq` (its 1-based line number) and `prev` (the RFC 6962 leaf hash of the line
before it): they let `audit verify` name the first bad line; the signed checkpoints are what
make tampering detectable. Checkpoints live in `audit/checkpoints/<size>.note`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.audit import merkle
from appliance.errors import AuditError, NoSpaceError
from appliance.fsutil import (
    atomic_write_bytes,
    fsync_dir,
    is_no_space,
    loads_json,
    open_regular,
    read_regular,
)
from appliance.home import Home

LOCK_NAME = ".lock"
CHECKPOINT_DIR = "checkpoints"
GENESIS_PREV = "0" * 64
TAIL_CHUNK = 1 << 16
MAX_LOG_BYTES = 1 << 34
"""Largest audit log read whole (16 GiB: years of entries at a few hundred bytes each)."""
MAX_NOTE_BYTES = 64 * 1024
"""Largest checkpoint note read (a real one is a few hundred bytes)."""


def checkpoints_dir(home: Home) -> Path:
    """Where signed checkpoints are kept."""
    return home.audit_dir / CHECKPOINT_DIR


@contextlib.contextmanager
def locked(home: Home) -> Iterator[None]:
    """Hold the audit lock (exclusive, blocking) for the block."""
    home.audit_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home.audit_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _last_line(path: Path) -> tuple[bytes | None, bool]:
    """The last complete line (without its newline) and whether the file ends cleanly."""
    if not os.path.lexists(path):
        return None, True
    with open_regular(path, error=AuditError, what="the audit log") as handle:
        end = handle.seek(0, os.SEEK_END)
        if end == 0:
            return None, True
        pos, buf = end, b""
        while pos > 0:
            step = min(TAIL_CHUNK, pos)
            pos -= step
            handle.seek(pos)
            buf = handle.read(step) + buf
            body = buf[:-1] if buf.endswith(b"\n") else buf
            if b"\n" in body or pos == 0:
                return body.rsplit(b"\n", 1)[-1], buf.endswith(b"\n")
    return None, True


def _next_link(path: Path, last: bytes | None) -> tuple[int, str]:
    if last is None:
        return 1, GENESIS_PREV
    try:
        seq = int(loads_json(last)["seq"]) + 1
    except (ValueError, KeyError, TypeError):
        seq = len(read_lines(path)[0]) + 1  # a damaged tail: count instead
    return seq, merkle.leaf_hash(last).hex()


def append(home: Home, event: dict[str, Any]) -> int:
    """Append one (already redacted) event; returns its sequence number. Caller holds no lock."""
    with locked(home):
        return append_locked(home, event)


def append_locked(home: Home, event: dict[str, Any]) -> int:
    """Append under a lock the caller holds. A torn tail left by a crash is cut off first,
    and the cut is itself audited (its length and sha256, never its bytes)."""
    path = home.audit_log
    torn = _cut_torn_tail(path)
    if torn is not None:
        _append_line(home, _repair_event(torn))
    return _append_line(home, event)


def _append_line(home: Home, event: dict[str, Any]) -> int:
    path = home.audit_log
    last, _ = _last_line(path)
    seq, prev = _next_link(path, last)
    line = json.dumps({**event, "seq": seq, "prev": prev}, sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"), default=str).encode("utf-8", "backslashreplace")
    existed = path.exists()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise _write_failed(path, exc) from None
    try:
        _write_all(fd, line + b"\n", path)
    finally:
        os.close(fd)
    if not existed:
        fsync_dir(path.parent)
    return seq


def _write_all(fd: int, data: bytes, path: Path) -> None:
    """Write and fsync `data` at the end of the log, or leave the log as it was: a failed
    write (a full disk, an I/O error) is truncated back so no torn line remains."""
    start = os.fstat(fd).st_size
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, start)
            os.fsync(fd)
        raise _write_failed(path, exc) from None


def _write_failed(path: Path, exc: OSError) -> AuditError | NoSpaceError:
    if is_no_space(exc):
        return NoSpaceError(f"no space left on the audit log {path}; the entry was not "
                            "written and the log is unchanged")
    return AuditError(f"cannot write the audit log: {exc.strerror}", where=str(path),
                      hint="check free space and permissions")


def _cut_torn_tail(path: Path) -> tuple[int, str, bool] | None:
    """Repair a log that does not end in a newline (call with the audit lock held): a whole
    entry that only lost its newline gets it back; anything else after the last newline (a
    line a crash cut short) is truncated. Returns (bytes, their sha256, kept), or None when
    the log ends cleanly."""
    _, clean = _last_line(path)
    if clean:
        return None
    with open(path, "r+b") as handle:
        end = handle.seek(0, os.SEEK_END)
        pos = end
        while pos > 0:
            step = min(TAIL_CHUNK, pos)
            handle.seek(pos - step)
            newline = handle.read(step).rfind(b"\n")
            if newline >= 0:
                pos = pos - step + newline + 1
                break
            pos -= step
        handle.seek(pos)
        digest, size, head = hashlib.sha256(), 0, b""
        while chunk := handle.read(TAIL_CHUNK):
            digest.update(chunk)
            head += chunk[:max(0, MAX_NOTE_BYTES - len(head))]
            size += len(chunk)
        kept = size <= MAX_NOTE_BYTES and _is_entry(head)
        if kept:
            handle.write(b"\n")
        else:
            handle.truncate(pos)
        handle.flush()
        os.fsync(handle.fileno())
    return size, "sha256:" + digest.hexdigest(), kept


def _is_entry(raw: bytes) -> bool:
    """True when `raw` is a complete audit entry (an object with its seq and prev)."""
    try:
        entry = loads_json(raw)
    except ValueError:
        return False
    return isinstance(entry, dict) and isinstance(entry.get("seq"), int) \
        and isinstance(entry.get("prev"), str)


def _repair_event(torn: tuple[int, str, bool]) -> dict[str, Any]:
    """The audit event for a repaired tail, through the same processors as every event."""
    from appliance.audit.processors import CHAIN

    size, digest, kept = torn
    reason = ("the last entry had lost its newline; the newline was restored" if kept else
              "the log ended in an incomplete line (a crash during an append); it was cut "
              "off before this entry")
    event: dict[str, Any] = {"event": "audit.repaired", "outcome": "ok", "torn_bytes": size,
                             "torn_sha256": digest, "kept": kept, "reason": reason}
    for processor in CHAIN:
        event = dict(processor(None, "info", event))
    return event


def read_lines(path: Path) -> tuple[list[bytes], bool]:
    """Every line without its newline, and whether the last one was torn (no newline)."""
    if not os.path.lexists(path):
        return [], False
    data = read_regular(path, max_bytes=MAX_LOG_BYTES, what="the audit log", error=AuditError)
    if not data:
        return [], False
    lines = data.split(b"\n")
    torn = lines[-1] != b""
    return (lines if torn else lines[:-1]), torn


def checkpoint_notes(directory: Path) -> list[tuple[str, bytes]]:
    """(file name, note bytes) of every stored checkpoint, by file name."""
    if not directory.is_dir():
        return []
    notes = []
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".note") and path.is_file() and not path.is_symlink():
            notes.append((path.name, read_regular(path, max_bytes=MAX_NOTE_BYTES,
                                                  what="a checkpoint note", error=AuditError)))
    return notes


def note_name(size: int) -> str:
    """File name of the checkpoint for a tree of `size` entries."""
    return f"{size:012d}.note"


def latest_size(home: Home) -> int:
    """Size of the newest stored checkpoint (0 when none)."""
    directory = checkpoints_dir(home)
    if not directory.is_dir():
        return 0
    stems = [p.name[:-5] for p in directory.iterdir() if p.name.endswith(".note")]
    return max((int(s) for s in stems if s.isdigit()), default=0)


def store_note(home: Home, size: int, note: bytes) -> Path:
    """Write a signed checkpoint atomically."""
    path = checkpoints_dir(home) / note_name(size)
    atomic_write_bytes(path, note, 0o644)
    return path
