"""Audit operations for the CLI and TUI: verify, export a bundle, sign a checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.errors import AuditError, HomeError
from appliance.fsutil import atomic_write_bytes, read_regular
from appliance.home import Home


def _read_anchor(anchor: str | Path | None) -> bytes | None:
    if anchor is None:
        return None
    from appliance.audit.logfile import MAX_NOTE_BYTES

    return read_regular(Path(anchor), max_bytes=MAX_NOTE_BYTES, what="the anchor checkpoint",
                        error=HomeError)


def _marker_key(home: Home) -> str | None:
    import json

    try:
        value = json.loads(home.marker.read_text())["keys"]["checkpoint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return value if isinstance(value, str) else None


def verify_home(home: Home, anchor: str | Path | None = None) -> dict[str, Any]:
    """Verify the home's log; records `audit.verified` afterwards."""
    from appliance import audit, keys
    from appliance.audit import logfile
    from appliance.audit.notes import origin_for
    from appliance.audit.verify import verify_log

    home.require_initialised()
    anchor_note = _read_anchor(anchor)
    key = keys.checkpoint_public_key(home)
    with logfile.locked(home):
        lines, torn = logfile.read_lines(home.audit_log)
        stored = logfile.checkpoint_notes(logfile.checkpoints_dir(home))
    origin = origin_for(keys.fingerprint(key))
    report = verify_log(lines, torn, stored, key=key, origin=origin, anchor_note=anchor_note)
    report.checkpoint_key = keys.fingerprint(key)
    if _marker_key(home) != report.checkpoint_key:
        report.ok = False
        report.reason = "the checkpoint public key differs from the one init recorded"
        report.problems.append(report.reason)
    audit.record(home, "audit.verified", outcome="ok" if report.ok else "failed",
                 entries=report.entries, covered=report.covered,
                 first_bad_line=report.first_bad_line, anchored=anchor is not None)
    return report.as_dict()


def verify_bundle(bundle: str | Path, anchor: str | Path | None = None,
                  trusted_key: str | None = None) -> dict[str, Any]:
    """Verify an exported bundle, no home needed. `trusted_key` pins the checkpoint key's
    fingerprint (learned out of band); without it the bundle's own key is used and reported."""
    from appliance import keys
    from appliance.audit import bundle as bundles
    from appliance.audit.notes import origin_for
    from appliance.audit.verify import verify_log

    lines, torn, stored, key = bundles.read(Path(bundle))
    fp = keys.fingerprint(key)
    if trusted_key is not None and fp != trusted_key:
        raise AuditError(f"the bundle's checkpoint key is {fp}, not the trusted {trusted_key}",
                         where=str(bundle))
    report = verify_log(lines, torn, stored, key=key, origin=origin_for(fp),
                        anchor_note=_read_anchor(anchor))
    report.checkpoint_key = fp
    return report.as_dict()


def checkpoint_now(home: Home, passphrase: bytes, out: str | Path | None = None
                   ) -> dict[str, Any]:
    """Sign a checkpoint over the whole log; with `out`, also export it as an anchor."""
    from appliance import audit
    from appliance.audit import logfile

    home.require_initialised()
    audit.unlock(home, passphrase)
    audit.record(home, "audit.checkpointed", anchor_exported=out is not None)
    cp = audit.checkpoint(home)
    if out is not None:
        note = (logfile.checkpoints_dir(home) / logfile.note_name(cp.size)).read_bytes()
        atomic_write_bytes(Path(out), note, 0o644)
    return cp.as_dict()


def export_bundle(home: Home, out: str | Path, passphrase: bytes | None) -> dict[str, Any]:
    """Write the auditor's bundle; with the passphrase, the log is fully covered first."""
    from appliance import audit
    from appliance.audit import bundle

    home.require_initialised()
    audit.record(home, "audit.exported")
    if passphrase is not None:
        audit.unlock(home, passphrase)
        audit.checkpoint(home)
    return bundle.export(home, Path(out))
