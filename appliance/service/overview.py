"""What the operator console's Overview shows: home, keys, audit log and latest runs.

Read-only views over the home's layout. Nothing here decrypts, verifies or writes; the chain
status comes from the audit service (`appliance.service.audit.verify_home`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from appliance.fsutil import loads_json
from appliance.home import Home

SIGNATURE_FILE = "model.sig"
"""The OpenSSF model-signing bundle each artifact directory carries once signed."""


@dataclass(frozen=True)
class KeyFile:
    """One file in the home's keys directory (never its content)."""

    name: str
    kind: str
    """`sealed` (a secret sealed under the passphrase), `public`, or `other`."""


@dataclass(frozen=True)
class AuditEvent:
    """One audit log line as stored (the log holds only redacted values)."""

    line: int
    time: str
    action: str
    outcome: str
    actor: str
    fields: dict[str, object] = field(default_factory=dict)
    readable: bool = True

    def details(self) -> str:
        """The remaining fields as `key=value` pairs, in key order."""
        return " ".join(f"{k}={_compact(v)}" for k, v in sorted(self.fields.items()))


@dataclass(frozen=True)
class AuditSummary:
    """Entry count and the newest events of the audit log."""

    exists: bool
    entries: int
    last: list[AuditEvent]


@dataclass(frozen=True)
class RunInfo:
    """One artifact directory (one training run)."""

    run_id: str
    modified: str
    signed: bool


@dataclass(frozen=True)
class HomeStatus:
    """Where the home is and whether init completed there."""

    root: str
    initialised: bool


META_KEYS = ("time", "action", "outcome", "actor", "seq", "prev")
"""Envelope keys of an audit line; everything else is shown as the event's details."""


def _compact(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _utc(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp, _dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def home_status(home: Home) -> HomeStatus:
    """The home's root and whether it is initialised."""
    return HomeStatus(str(home.root), home.is_initialised())


def key_files(home: Home) -> list[KeyFile]:
    """The files in the home's keys directory, by name (contents are never read)."""
    if not home.keys_dir.is_dir():
        return []
    out = []
    for path in sorted(home.keys_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        kind = "sealed" if ".sealed" in path.name else \
            "public" if path.name.endswith((".pub", ".pub.pem", ".pem")) else "other"
        out.append(KeyFile(path.name, kind))
    return out


def parse_event(number: int, raw: bytes) -> AuditEvent:
    """One log line as an AuditEvent; a line that is not a JSON object is flagged unreadable."""
    try:
        data = loads_json(raw)
    except ValueError:  # fsutil.ParseProblem: bad JSON, too deep, a lone surrogate
        data = None
    if not isinstance(data, dict):
        return AuditEvent(number, "", "(unreadable line)", "", "", readable=False)
    rest = {k: v for k, v in data.items() if k not in META_KEYS}
    return AuditEvent(number, str(data.get("time", "")), str(data.get("action", "")),
                      str(data.get("outcome", "")), str(data.get("actor", "")), rest)


def audit_lines(home: Home) -> list[bytes]:
    """Every complete line of the audit log (an unterminated last line is left out)."""
    try:
        data = home.audit_log.read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    return lines[:-1]


def audit_summary(home: Home, last: int = 5) -> AuditSummary:
    """How many entries the audit log holds and its newest `last` events, newest first."""
    if not home.audit_log.is_file():
        return AuditSummary(False, 0, [])
    lines = audit_lines(home)
    start = max(len(lines) - last, 0)
    newest = [parse_event(n, lines[n - 1]) for n in range(len(lines), start, -1)]
    return AuditSummary(True, len(lines), newest)


def latest_runs(home: Home, limit: int = 10) -> list[RunInfo]:
    """Artifact directories, newest first (symlinks are not followed or listed; hidden
    names, such as training's `.staging`, are not runs)."""
    if not home.artifacts_dir.is_dir():
        return []
    runs = []
    for path in home.artifacts_dir.iterdir():
        if path.is_symlink() or not path.is_dir() or path.name.startswith("."):
            continue
        stat = path.stat()
        runs.append((stat.st_mtime, path))
    runs.sort(key=lambda item: (item[0], item[1].name), reverse=True)
    return [RunInfo(p.name, _utc(mtime), (p / SIGNATURE_FILE).is_file() and
                    not (p / SIGNATURE_FILE).is_symlink()) for mtime, p in runs[:limit]]


def relative_to_home(home: Home, path: str | os.PathLike[str]) -> str:
    """`path` relative to the home when inside it, else as given."""
    try:
        return str(Path(path).relative_to(home.root))
    except ValueError:
        return str(path)
