"""Audit operations for the CLI and TUI: verify, export a bundle, sign a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from appliance import trust
from appliance.errors import AuditError, HomeError
from appliance.fsutil import atomic_write_bytes, read_regular
from appliance.home import Home

if TYPE_CHECKING:
    from appliance.audit.bundle import BundleSummary
    from appliance.audit.notes import CheckpointSummary
    from appliance.audit.verify import LogReport


class LogVerified(TypedDict):
    """A verified audit log (`appliance audit verify --json`, of the home or a bundle)."""

    ok: bool
    reason: str
    entries: int
    covered: int
    uncovered: int
    checkpoints: int
    first_bad_line: int | None
    latest: CheckpointSummary | None
    anchor: CheckpointSummary | None
    origin: str
    checkpoint_key: str
    problems: list[str]
    trust: str
    """The trust root that anchored the check, or `trust.UNANCHORED`."""
    anchored: bool
    unchecked: NotRequired[list[str]]
    """What a home's check could not cover (absent for a bundle)."""


def _verified(report: LogReport, trust_line: str, anchored: bool) -> LogVerified:
    return {"ok": report.ok, "reason": report.reason, "entries": report.entries,
            "covered": report.covered, "uncovered": report.uncovered,
            "checkpoints": report.checkpoints, "first_bad_line": report.first_bad_line,
            "latest": report.latest, "anchor": report.anchor, "origin": report.origin,
            "checkpoint_key": report.checkpoint_key, "problems": report.problems,
            "trust": trust_line, "anchored": anchored}


def _read_anchor(anchor: str | Path | None) -> bytes | None:
    if anchor is None:
        return None
    from appliance.audit.logfile import MAX_NOTE_BYTES

    return read_regular(Path(anchor), max_bytes=MAX_NOTE_BYTES, what="the anchor checkpoint",
                        error=HomeError)


def _unlock(home: Home, passphrase: bytes) -> None:
    """Unseal the master key: checks the home manifest, holds the checkpoint key, and signs
    a checkpoint (and updates the manifest) at exit."""
    from appliance import audit
    from appliance.policy import load_policy

    policy = load_policy(home.policy_file)
    trust.unlock(home, passphrase, policy)
    if not audit.unlocked(home):  # the trust session unlocks it; not when switched off
        audit.unlock(home, passphrase, policy)


def _check_manifest(home: Home, report: LogReport) -> None:
    """The signed manifest's checkpoint size: deleted or rolled-back notes fail."""
    from appliance import keys, manifest

    body = manifest.check_signature(home, manifest.read(home), keys.checkpoint_public_key(home))
    newest = report.latest["size"] if report.latest else 0
    if newest < body.checkpoint_size:
        report.ok = False
        report.reason = (f"audit checkpoints were deleted or rolled back: the signed home "
                         f"manifest records one covering {body.checkpoint_size} entries, the "
                         f"newest left covers {newest}")
        report.problems.append(report.reason)
        report.covered, report.uncovered = 0, report.entries


def _anchor_key(report: LogReport, trusted_key: str | None) -> str:
    """Compare the checkpoint key with the verifier's pin; the trust line for the report."""
    from appliance import trust

    root = trust.load_trust_root(trusted_key, "checkpoint")
    if root is None or root.checkpoint is None:
        return trust.UNANCHORED
    if report.checkpoint_key != root.checkpoint:
        report.ok = False
        report.reason = (f"the checkpoint key is {report.checkpoint_key}, not the trusted "
                         f"{root.checkpoint}")
        report.problems.insert(0, report.reason)
        report.covered, report.uncovered = 0, report.entries
    return root.describe()


def verify_home(home: Home, anchor: str | Path | None = None,
                trusted_key: str | None = None) -> LogVerified:
    """Verify the home's log (and, with `trusted_key`, against the verifier's pinned
    checkpoint key); records `audit.verified` afterwards."""
    from appliance import audit, keys, trust
    from appliance.audit import logfile
    from appliance.audit.notes import origin_for
    from appliance.audit.verify import verify_log

    trust.require_home(home)  # keys against home.json and the signed manifest
    anchor_note = _read_anchor(anchor)
    key = keys.checkpoint_public_key(home)
    with logfile.locked(home):
        lines, torn = logfile.read_lines(home.audit_log)
        stored = logfile.checkpoint_notes(logfile.checkpoints_dir(home))
    origin = origin_for(keys.fingerprint(key))
    report = verify_log(lines, torn, stored, key=key, origin=origin, anchor_note=anchor_note)
    report.checkpoint_key = keys.fingerprint(key)
    if report.ok:
        _check_manifest(home, report)
    trust_line = _anchor_key(report, trusted_key)
    audit.record(home, "audit.verified", outcome="ok" if report.ok else "failed",
                 entries=report.entries, covered=report.covered,
                 first_bad_line=report.first_bad_line, anchored=anchor is not None,
                 pinned=trusted_key is not None)
    return {**_verified(report, trust_line, trusted_key is not None),
            "unchecked": [trust.NO_MAC]}


def verify_bundle(bundle: str | Path, anchor: str | Path | None = None,
                  trusted_key: str | None = None) -> LogVerified:
    """Verify an exported bundle, no home needed. `trusted_key` pins the checkpoint key's
    fingerprint (learned out of band); without it the bundle's own key is used and reported."""
    from appliance import keys, trust
    from appliance.audit import bundle as bundles
    from appliance.audit.notes import origin_for
    from appliance.audit.verify import verify_log

    root = trust.load_trust_root(trusted_key, "checkpoint")
    lines, torn, stored, key = bundles.read(Path(bundle))
    fp = keys.fingerprint(key)
    if root is not None and fp != root.checkpoint:
        raise AuditError(f"the bundle's checkpoint key is {fp}, not the trusted "
                         f"{root.checkpoint}", where=str(bundle))
    report = verify_log(lines, torn, stored, key=key, origin=origin_for(fp),
                        anchor_note=_read_anchor(anchor))
    report.checkpoint_key = fp
    return _verified(report, root.describe() if root else trust.UNANCHORED, root is not None)


def checkpoint_now(home: Home, passphrase: bytes, out: str | Path | None = None
                   ) -> CheckpointSummary:
    """Sign a checkpoint over the whole log; with `out`, also export it as an anchor."""
    from appliance import audit
    from appliance.audit import logfile

    trust.require_home(home)
    _unlock(home, passphrase)
    audit.record(home, "audit.checkpointed", anchor_exported=out is not None)
    cp = audit.checkpoint(home)
    if out is not None:
        note = (logfile.checkpoints_dir(home) / logfile.note_name(cp.size)).read_bytes()
        atomic_write_bytes(Path(out), note, 0o644)
    return cp.as_dict()


def export_bundle(home: Home, out: str | Path, passphrase: bytes | None) -> BundleSummary:
    """Write the auditor's bundle; with the passphrase, the log is fully covered first."""
    from appliance import audit
    from appliance.audit import bundle

    trust.require_home(home)
    audit.record(home, "audit.exported")
    if passphrase is not None:
        _unlock(home, passphrase)
        audit.checkpoint(home)
    return bundle.export(home, Path(out))
