"""The audit log: one event per action, redacted, tamper-evident.

`record()` is the one entry point every component uses. Events carry the action, the
outcome, and digests, counts and ids, never record text. Each event runs through the
structlog processor chain in `appliance.audit.processors` (time, actor, error formatting,
redaction last) and is appended as one JSON line under a file lock with fsync.

Who signs checkpoints: appending needs no secret, so a command without the passphrase
(`dataset list`, `verify`) still records. Signing a checkpoint needs the Ed25519 key, sealed
under the passphrase: a process that has the passphrase calls `unlock(home, passphrase)`;
from then on `record()` signs a checkpoint whenever `policy.audit.checkpoint_interval`
entries are uncovered, `checkpoint(home)` signs one at a run boundary, and one more is
signed when the process exits cleanly. `appliance audit checkpoint` covers the tail by hand.
"""

from __future__ import annotations

import atexit
import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.audit import logfile
from appliance.audit.notes import Checkpoint
from appliance.errors import ApplianceError, AuditError
from appliance.home import Home

__all__ = ["Checkpoint", "checkpoint", "forget", "record", "unlock", "unlocked"]


@dataclass
class _Signer:
    key: Any
    origin: str
    interval: int


_SIGNERS: dict[Path, _Signer] = {}


class _Sink:
    """The structlog 'logger': receives the redacted event dict and appends it."""

    def __init__(self, home: Home) -> None:
        self.home = home

    def msg(self, **event: Any) -> None:
        """Append one event (already through the whole chain; structlog passes the final
        processor's dict as keyword arguments)."""
        with logfile.locked(self.home):
            seq = logfile.append_locked(self.home, event)
            signer = _SIGNERS.get(_key(self.home))
            if signer and seq - logfile.latest_size(self.home) >= signer.interval:
                # the event is already durable; a failed periodic checkpoint only leaves the
                # tail uncovered (audit verify says so) and must not fail the caller's action
                with contextlib.suppress(ApplianceError, OSError):
                    _checkpoint_locked(self.home, signer)

    info = msg


def _logger(home: Home) -> Any:
    import structlog

    from appliance.audit.processors import CHAIN

    return structlog.wrap_logger(_Sink(home), processors=list(CHAIN),
                                 wrapper_class=structlog.BoundLogger,
                                 cache_logger_on_first_use=False)


def record(home: Home, action: str, *, outcome: str = "ok", **fields: object) -> None:
    """Append one audit event for `action` with its outcome and fields."""
    if "event" in fields:  # structlog's positional name; keep a caller's field of that name
        fields["event_"] = fields.pop("event")
    _logger(home).info(action, outcome=outcome, **fields)


def _checkpoint_locked(home: Home, signer: _Signer) -> Checkpoint:
    from appliance.audit import merkle, notes

    lines, torn = logfile.read_lines(home.audit_log)
    if torn:
        raise AuditError("the audit log ends in a torn line; not signing over it",
                         where=str(home.audit_log), hint="run appliance audit verify")
    cp = Checkpoint(signer.origin, len(lines),
                    merkle.root_of([merkle.leaf_hash(line) for line in lines]))
    if cp.size > logfile.latest_size(home):
        logfile.store_note(home, cp.size, notes.sign(cp, signer.key))
    return cp


def _key(home: Home) -> Path:
    """Signers are held by absolute path: the shutdown checkpoint runs after the working
    directory may have changed, and must still write into the same home."""
    return home.root.absolute()


def unlock(home: Home, passphrase: bytes, policy: Any = None, *, key: Any = None) -> None:
    """Unseal the checkpoint key for this process so checkpoints get signed (see above);
    `key` is the already unsealed key when the caller holds it."""
    from appliance import keys
    from appliance.audit.notes import origin_for
    from appliance.policy import load_policy

    policy = policy if policy is not None else load_policy(home.policy_file)
    if key is None:
        key = keys.load_checkpoint_key(home, passphrase, policy)
    first = not _SIGNERS
    _SIGNERS[_key(home)] = _Signer(key, origin_for(keys.fingerprint(key.public_key())),
                                  policy.audit.checkpoint_interval)
    if first:
        atexit.register(_checkpoint_all)


def forget(home: Home) -> None:
    """Drop this process's checkpoint key for `home` (no more automatic checkpoints);
    `appliance.trust.forget` also drops the manifest session."""
    _SIGNERS.pop(_key(home), None)


def unlocked(home: Home) -> bool:
    """True when this process can sign checkpoints for `home`."""
    return _key(home) in _SIGNERS


def checkpoint(home: Home) -> Checkpoint:
    """Sign a checkpoint over the whole log now (run boundaries, shutdown). Needs unlock()."""
    signer = _SIGNERS.get(_key(home))
    if signer is None:
        raise AuditError("the audit checkpoint key is locked in this process",
                         hint="call appliance.audit.unlock(home, passphrase) first")
    with logfile.locked(home):
        return _checkpoint_locked(home, signer)


def _checkpoint_all() -> None:
    """Clean shutdown: cover every entry this process can sign for."""
    for root in list(_SIGNERS):
        with contextlib.suppress(ApplianceError, OSError):
            checkpoint(Home(root))
