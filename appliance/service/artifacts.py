"""Artifact verification for the CLI and TUI (`appliance verify DIR`)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from appliance import trust
from appliance.errors import IntegrityError
from appliance.home import Home

if TYPE_CHECKING:
    from appliance.service.policy import MergePermission

COPY_CHUNK = 1 << 20


class Verified(TypedDict):
    """One artifact's verification (`appliance verify DIR --json`)."""

    ok: bool
    reason: str
    root_digest: str
    signer: str
    content_digest: str
    files: int
    provenance: dict[str, Any]
    trust: str
    """The trust root that anchored the check, or `trust.UNANCHORED`."""
    anchored: bool
    unchecked: list[str]
    """What this check could not cover (the manifest's MAC without the passphrase)."""


class Described(Verified):
    """`verify` plus what the console's Artifacts page shows beside it."""

    active_policy_digest: str
    export: MergePermission
    total_steps: int | None


ArtifactRow = TypedDict("ArtifactRow", {"run": str, "modified (UTC)": str, "signed": str})
"""One artifact directory in the console's list (`signed` is "yes" or "no")."""


def trusted_keys(home: Home, policy_path: str | Path | None = None) -> set[str]:
    """Fingerprints the policy trusts: its `signing.trusted_keys`, plus the home's own
    signing key when `signing.trust_home_key` is set."""
    from appliance import keys
    from appliance.policy import load_policy

    if policy_path is None:
        trust.require_home(home)
    policy = load_policy(policy_path if policy_path is not None else home.policy_file)
    trusted = set(policy.signing.trusted_keys)
    if policy.signing.trust_home_key and home.is_initialised():
        trust.require_home(home)  # the home key must be the one home.json and the manifest name
        trusted.add(keys.fingerprint(keys.signing_public_key(home)))
    return trusted


def verify(home: Home, artifact: str | Path, policy_path: str | Path | None = None, *,
           trusted_key: str | None = None) -> Verified:
    """Verify `artifact`; records `artifact.verified` when the home exists. With
    `trusted_key` (the verifier's pin) only that signing key is trusted; without it the
    report says the trust is unanchored."""
    from appliance import audit, trust
    from appliance.signing import verify_artifact

    root = trust.load_trust_root(trusted_key, "signing")
    pinned = {root.signing} if root is not None and root.signing else None
    if root is not None and pinned is None:
        from appliance.errors import UsageError

        raise UsageError("the trust root names no signing key", where=str(trusted_key))
    if pinned is not None and home.is_initialised():
        trust.require_home(home)
    result = verify_artifact(artifact, pinned or trusted_keys(home, policy_path))
    if home.is_initialised():
        audit.record(home, "artifact.verified", outcome="ok" if result.ok else "failed",
                     artifact=Path(artifact).name, root_digest=result.root_digest or None,
                     signer=result.signer or None, reason=result.reason,
                     pinned=pinned is not None)
    return {"ok": result.ok, "reason": result.reason, "root_digest": result.root_digest,
            "signer": result.signer, "content_digest": result.content_digest,
            "files": result.files, "provenance": result.provenance,
            "trust": root.describe() if root else trust.UNANCHORED, "anchored": root is not None,
            "unchecked": [trust.NO_MAC] if home.is_initialised() else []}


def list_artifacts(home: Home) -> list[ArtifactRow]:
    """Artifact directories, newest first: run id, modification time (UTC), signed or not
    (a signature file is present; `verify`/`describe` check it)."""
    from appliance.service.overview import latest_runs

    return [{"run": r.run_id, "modified (UTC)": r.modified, "signed": "yes" if r.signed
             else "no"} for r in latest_runs(home, limit=10_000)]


def describe(home: Home, artifact: str | Path) -> Described:
    """`verify` plus what the console shows beside it: the active policy's digest (to
    compare with the one the artifact was trained under) and whether the policy lets
    merged weights be exported."""
    from appliance.service.policy import active_policy, merge_permission

    result = verify(home, artifact)
    return {**result, "active_policy_digest": active_policy(home).digest,
            "export": merge_permission(home),
            "total_steps": _total_steps(Path(artifact)) if result["ok"] else None}


def _total_steps(artifact: Path) -> int | None:
    """Optimizer steps the run took, from its report.json (a signed file: read only after
    the artifact verified); None when absent or unreadable."""
    import json

    try:
        steps = json.loads((artifact / "report.json").read_text("utf-8")).get("total_steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def _copy_file(src: Path, dest: Path) -> None:
    """Copy one regular file without following a link; refuses anything else."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IntegrityError("the artifact holds something that is not a regular file",
                                 where=str(src))
        with open(fd, "rb", closefd=False) as reader, open(dest, "xb") as writer:
            while chunk := reader.read(COPY_CHUNK):
                writer.write(chunk)
    finally:
        os.close(fd)


def _copy_tree(src: Path, dest: Path) -> None:
    dest.mkdir(mode=0o700)
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        path = Path(entry.path)
        if entry.is_symlink():
            raise IntegrityError("the artifact holds a symbolic link", where=str(path))
        if entry.is_dir(follow_symlinks=False):
            _copy_tree(path, dest / entry.name)
        else:
            try:
                _copy_file(path, dest / entry.name)
            except OSError as exc:
                raise IntegrityError(f"cannot copy the artifact: {exc.strerror}",
                                     where=str(path)) from None


@contextlib.contextmanager
def verified_copy(home: Home, artifact: str | Path) -> Iterator[tuple[Path, Verified]]:
    """Copy `artifact` into a private directory of the home, verify the copy, and yield
    (copy, verify result): callers read only the copy, so a swap of the original after
    verification changes nothing. The copy is removed afterwards."""
    src = Path(artifact)
    if src.is_symlink() or not src.is_dir():
        raise IntegrityError("not an artifact directory", where=str(src))
    home.runs_dir.mkdir(mode=0o700, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".verified-", dir=home.runs_dir) as private:
        copy = Path(private) / (src.name or "artifact")
        _copy_tree(src, copy)
        yield copy, verify(home, copy)
