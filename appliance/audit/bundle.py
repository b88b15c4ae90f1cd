"""The auditor's bundle: the log, its checkpoints, the public keys and every artifact's
signature and provenance, copied under the audit lock so log and checkpoints agree.

Layout of DIR: `log.jsonl`, `checkpoints/<size>.note`, `keys/*.pub.pem`,
`artifacts/<run-id>/{model.sig,provenance.sigstore.json}`, `bundle.json` (summary).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, TypedDict

from appliance import keys
from appliance.audit import logfile, notes
from appliance.errors import HomeError
from appliance.fsutil import atomic_write_bytes, atomic_write_text
from appliance.home import Home

FORMAT = "appliance-audit-bundle/v1"
SIGNATURE_FILES = ("model.sig", "provenance.sigstore.json")


def _prepare(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise HomeError("the bundle directory exists and is not empty", where=str(out),
                        hint="choose a new directory")
    out.mkdir(parents=True, exist_ok=True)


def _copy_artifacts(home: Home, out: Path) -> int:
    count = 0
    if not home.artifacts_dir.is_dir():
        return 0
    for run in sorted(home.artifacts_dir.iterdir()):
        if run.is_symlink() or not run.is_dir():
            continue
        for name in SIGNATURE_FILES:
            src = run / name
            if src.is_file() and not src.is_symlink():
                atomic_write_bytes(out / "artifacts" / run.name / name, src.read_bytes(), 0o644)
        count += 1
    return count


class BundleSummary(TypedDict):
    """The bundle's `bundle.json`, also `appliance audit export --json`."""

    format: str
    exported: str
    origin: str
    checkpoint_key: str
    checkpoint_verifier_key: str
    signing_key: str
    entries: int
    checkpoints: int
    artifacts: int


def export(home: Home, out: Path) -> BundleSummary:
    """Write the bundle into `out` (new or empty); returns its summary."""
    _prepare(out)
    keys.export_public(home, out / "keys")
    fps = keys.fingerprints(home)
    with logfile.locked(home):
        log = home.audit_log.read_bytes() if home.audit_log.exists() else b""
        atomic_write_bytes(out / "log.jsonl", log)
        stored = logfile.checkpoint_notes(logfile.checkpoints_dir(home))
        for name, note in stored:
            atomic_write_bytes(out / "checkpoints" / name, note, 0o644)
    origin = notes.origin_for(fps.checkpoint)
    summary: BundleSummary = {
        "format": FORMAT,
        "exported": _dt.datetime.now(_dt.UTC).isoformat(),
        "origin": origin,
        "checkpoint_key": fps.checkpoint,
        "checkpoint_verifier_key": notes.verifier_key(origin, keys.checkpoint_public_key(home)),
        "signing_key": fps.signing,
        "entries": log.count(b"\n"),
        "checkpoints": len(stored),
        "artifacts": _copy_artifacts(home, out),
    }
    atomic_write_text(out / "bundle.json", json.dumps(summary, indent=2, sort_keys=True) + "\n",
                      0o644)
    return summary


def read(bundle: Path) -> tuple[list[bytes], bool, list[tuple[str, bytes]], Any]:
    """(lines, torn, stored notes, checkpoint public key) from a bundle directory."""
    if not (bundle / "log.jsonl").is_file():
        raise HomeError("not an audit bundle (no log.jsonl)", where=str(bundle),
                        hint="pass the directory written by appliance audit export")
    lines, torn = logfile.read_lines(bundle / "log.jsonl")
    stored = logfile.checkpoint_notes(bundle / "checkpoints")
    key = keys.load_public_pem(bundle / "keys" / keys.CHECKPOINT_PUBLIC)
    return lines, torn, stored, key
