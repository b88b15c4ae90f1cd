"""The audit log: one event per action, redacted, tamper-evident.

`record()` is the one entry point every component uses. Events carry the action, the
outcome, and digests, counts and ids, never record text.

NOTE: this first implementation only appends a JSON line under a file lock with fsync. The
trust-primitives work (issue 3) replaces its internals with the structlog chain, redaction
processor, RFC 6962 leaves and signed checkpoints, keeping this signature.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import getpass
import json
import os

from appliance.home import Home


def record(home: Home, action: str, *, outcome: str = "ok", **fields: object) -> None:
    """Append one audit event for `action` with its outcome and fields."""
    event = {"time": _dt.datetime.now(_dt.UTC).isoformat(), "actor": getpass.getuser(),
             "action": action, "outcome": outcome, **fields}
    home.audit_dir.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(event, sort_keys=True, default=str) + "\n").encode("utf-8")
    fd = os.open(home.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
