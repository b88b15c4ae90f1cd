"""Nothing in the home is believed just because it is there.

- `check_permissions`: the home, `keys/` and `policy/` must not be group- or world-writable.
- `guard`: every command on an initialised home checks, without the passphrase, that the
  public keys are the ones `home.json` and the signed manifest name and that the active
  policy is the one the manifest records (a hand-edited policy is refused).
- `open_session`: a process that unseals the master key checks the manifest's MAC and
  compares what it binds with the home (naming what changed); it then holds the checkpoint
  key, so a checkpoint is signed, and the manifest brought up to date, at exit.
- `TrustRoot`: what a verifier pins (`--trusted-key` or the file `keys export` writes).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import stat
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from appliance import manifest
from appliance.errors import ApplianceError, HomeError, IntegrityError, UsageError
from appliance.home import Home

UNANCHORED = "unanchored: trusting the keys found in this home"
NO_MAC = ("not checked without the passphrase: the home manifest's MAC (any command that "
          "asks for the passphrase checks it)")
TRUST_ROOT_FILE = "trust-root.json"
_FINGERPRINT_RE = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_TRUST_FILE = 64 * 1024

#: test-only switch: True skips every check in this module (shows the attack tests can fail)
_DISABLED = False


# --- permissions ---------------------------------------------------------------------------
def check_permissions(home: Home) -> None:
    """HomeError when the home, `keys/` or `policy/` can be written by others."""
    if _DISABLED:
        return
    for path in (home.root, home.keys_dir, home.policy_file.parent):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise HomeError("is a symbolic link; the home and its keys/ and policy/ must be "
                            "real directories", where=str(path))
        if st.st_mode & 0o022:
            raise HomeError("is writable by group or others, so anyone could replace keys "
                            "or policy", where=str(path), hint=f"chmod go-w {path}")


# --- what the home holds now ----------------------------------------------------------------
def _marker_keys(home: Home) -> dict[str, Any]:
    """The key fingerprints `home.json` names; {} when it cannot be read (a special file,
    too large, too deep, not JSON), which the checks then report as a mismatch."""
    from appliance.fsutil import ParseProblem, loads_json, read_regular

    try:
        raw = read_regular(home.marker, max_bytes=_MAX_TRUST_FILE, what="home.json",
                           error=HomeError)
        keys = loads_json(raw)["keys"]
        return keys if isinstance(keys, dict) else {}
    except (ApplianceError, ParseProblem, KeyError, TypeError):
        return {}


def active_digest(home: Home) -> str:
    """Digest of the active policy file as it is on disk."""
    from appliance.policy import load_policy, policy_digest

    return policy_digest(load_policy(home.policy_file))


def policy_as_recorded(home: Home, recorded: str) -> bool:
    """Whether the active policy file is the one whose digest the manifest records (also
    in the form earlier builds recorded: a home they made is not refused after an upgrade)."""
    from appliance.policy import legacy_digest, load_policy, policy_digest

    policy = load_policy(home.policy_file)
    return recorded in (policy_digest(policy), legacy_digest(policy))


def current_facts(home: Home, recorded: manifest.Body) -> manifest.Body:
    """The home as it is, in the manifest's shape; models limited to recorded names."""
    from appliance import keys
    from appliance.audit import logfile
    from appliance.models import store
    from appliance.vault import store as vault

    fps = keys.fingerprints(home)
    models = {}
    for name in recorded.models:
        try:
            record = store.read_record(home, name)
        except ApplianceError:
            continue
        models[name] = {"root_digest": record.root_digest,
                        "source_digest": record.source_digest}
    datasets = {d.name: d.digest for d in vault.list_datasets(home) if not d.problem}
    policy = (recorded.policy_digest if policy_as_recorded(home, recorded.policy_digest)
              else active_digest(home))
    return manifest.Body(fps.signing, fps.checkpoint, policy, logfile.latest_size(home),
                         models, datasets)


def _key_changes(home: Home, body: manifest.Body | None) -> list[str]:
    """Public keys that differ from what `home.json` (and the manifest body) record."""
    from appliance import keys

    fps = keys.fingerprints(home)
    marker = _marker_keys(home)
    changes = []
    for role, now in (("signing", fps.signing), ("checkpoint", fps.checkpoint)):
        recorded = getattr(body, f"{role}_key") if body is not None else now
        if now != recorded or now != marker.get(role):
            changes.append(f"the {role} public key (not the one init recorded)")
    return changes


def differences(recorded: manifest.Body, now: manifest.Body) -> list[str]:
    """What changed from the manifest to the home, in words (empty when nothing did)."""
    out = []
    if now.signing_key != recorded.signing_key:
        out.append("the signing public key")
    if now.checkpoint_key != recorded.checkpoint_key:
        out.append("the checkpoint public key")
    if now.policy_digest != recorded.policy_digest:
        out.append(f"the active policy ({now.policy_digest}, recorded "
                   f"{recorded.policy_digest})")
    if now.checkpoint_size < recorded.checkpoint_size:
        out.append(f"audit checkpoints deleted or rolled back (newest covers "
                   f"{now.checkpoint_size} entries, recorded {recorded.checkpoint_size})")
    for name, digests in recorded.models.items():
        if now.models.get(name) != digests:
            out.append(f"base model {name!r} (its weights or record)")
    for name, digest in recorded.datasets.items():
        if name in now.datasets and now.datasets[name] != digest:
            out.append(f"dataset {name!r} (digest {now.datasets[name]}, recorded {digest})")
    return out


def _refuse(home: Home, what: list[str], hint: str) -> IntegrityError:
    return IntegrityError("changed outside the appliance: " + "; ".join(what),
                          where=str(home.root), hint=hint)


POLICY_HINT = ("restore the previous policy/active.toml, or apply a new policy with "
               "appliance policy apply FILE")
RESTORE_HINT = "the home was altered outside the appliance; restore it from a backup"


# --- every command: the public checks --------------------------------------------------------
def guard(home: Home, *, allow_policy_change: bool = False) -> manifest.Body | None:
    """Permissions, keys against `home.json` and the signed manifest, and the active policy
    against the manifest. Returns the (signed, not MAC-checked) body."""
    if _DISABLED:
        return None
    from appliance import keys

    check_permissions(home)
    sealed = manifest.read(home)
    for body in (None, sealed.body):  # home.json first, so a swapped key is named as such
        changed = _key_changes(home, body)
        if changed:
            raise _refuse(home, changed, RESTORE_HINT)
    body = manifest.check_signature(home, sealed, keys.checkpoint_public_key(home))
    if not allow_policy_change and not policy_as_recorded(home, body.policy_digest):
        raise IntegrityError("the active policy was changed by hand (its digest is not the "
                             "one the home manifest records)", where=str(home.policy_file),
                             hint=POLICY_HINT)
    return body


# --- processes holding the passphrase ---------------------------------------------------------
@dataclass
class Session:
    """The manifest keys one process holds for one home."""

    mac_key: bytes
    signer: Any
    body: manifest.Body


_SESSIONS: dict[Path, Session] = {}


def session(home: Home) -> Session | None:
    """This process's session for `home`, if it opened one."""
    return _SESSIONS.get(home.root.absolute())


def open_session(home: Home, master_key: bytes, passphrase: bytes, policy: Any, *,
                 allow_policy_change: bool = False) -> Session | None:
    """Check the manifest's MAC and what it binds; hold the keys to update it; sign a
    checkpoint and rewrite the manifest at exit. Idempotent per home and process."""
    if _DISABLED:
        return None
    existing = session(home)
    if existing is not None:
        return existing
    from appliance import audit, keys

    check_permissions(home)
    key = manifest.mac_key(master_key)
    body = manifest.check_mac(home, manifest.read(home), key)
    now = current_facts(home, body)
    changed = differences(body, now)
    if allow_policy_change:
        changed = [c for c in changed if not c.startswith("the active policy")]
    if changed:
        hint = POLICY_HINT if changed[0].startswith("the active policy") else RESTORE_HINT
        raise _refuse(home, changed, hint)
    signer = keys.load_checkpoint_key(home, passphrase, policy)
    if not audit.unlocked(home):
        audit.unlock(home, passphrase, policy, key=signer)
    opened = Session(key, signer, body)
    first = not _SESSIONS
    _SESSIONS[home.root.absolute()] = opened
    if first:
        atexit.register(_close_all)
    return opened


def update(home: Home, *, models: dict[str, dict[str, str]] | None = None,
           **changes: Any) -> None:
    """Change recorded facts (policy_digest, datasets; `models` entries are added) and
    rewrite the manifest now, under the audit lock, on top of the manifest as it is on disk
    (MAC-checked), so concurrent processes do not lose each other's records. Needs an open
    session."""
    held = session(home)
    if held is None:
        raise IntegrityError("the home manifest can only be changed with the passphrase",
                             where=str(home.root))
    from appliance.audit import logfile

    with logfile.locked(home):
        fresh = manifest.check_mac(home, manifest.read(home), held.mac_key)
        if models:
            changes["models"] = {**fresh.models, **models}
        body = replace(fresh, **changes)
        body.checkpoint_size = max(fresh.checkpoint_size, logfile.latest_size(home))
        manifest.write(home, body, held.mac_key, held.signer)
    held.body = body


def close(home: Home) -> None:
    """Sign a checkpoint over the log and record its size and the vault's datasets."""
    from appliance import audit
    from appliance.vault import store as vault

    held = _SESSIONS.pop(home.root.absolute(), None)
    if held is None or not home.root.is_dir():
        return
    if audit.unlocked(home):
        audit.checkpoint(home)
    datasets = {d.name: d.digest for d in vault.list_datasets(home) if not d.problem}
    _SESSIONS[home.root.absolute()] = held
    try:
        update(home, datasets=datasets)
    finally:
        _SESSIONS.pop(home.root.absolute(), None)


def forget(home: Home) -> None:
    """Drop this process's session and checkpoint key for `home` without writing (tests,
    init)."""
    from appliance import audit

    _SESSIONS.pop(home.root.absolute(), None)
    audit.forget(home)


def require_home(home: Home, *, allow_policy_change: bool = False) -> None:
    """What every command checks of its home without the passphrase: init completed, then
    `guard` (permissions, keys against home.json and the manifest, the active policy)."""
    home.require_initialised()
    guard(home, allow_policy_change=allow_policy_change)


def unlock(home: Home, passphrase: bytes, policy: Any, *,
           allow_policy_change: bool = False) -> bytes:
    """Unseal the master key (PassphraseError on a wrong passphrase) and open this
    process's trust session: the home manifest's MAC and everything it binds are checked
    (refused, naming what changed), and a checkpoint is signed at exit."""
    from appliance import masterkey

    key = masterkey.unseal(home, passphrase, policy)
    open_session(home, key, passphrase, policy, allow_policy_change=allow_policy_change)
    return key


def _close_all() -> None:
    for root in list(_SESSIONS):
        with contextlib.suppress(ApplianceError, OSError):
            close(Home(root))


def create(home: Home, master_key: bytes, signer: Any, policy_digest: str) -> None:
    """init: write the first manifest and keep the session for the rest of the process."""
    from appliance import keys
    from appliance.audit import logfile

    fps = keys.fingerprints(home)
    body = manifest.Body(fps.signing, fps.checkpoint, policy_digest, logfile.latest_size(home))
    key = manifest.mac_key(master_key)
    manifest.write(home, body, key, signer)
    first = not _SESSIONS
    _SESSIONS[home.root.absolute()] = Session(key, signer, body)
    if first:
        atexit.register(_close_all)


def recorded_model(home: Home, name: str) -> dict[str, str] | None:
    """The model digests the MAC-checked manifest of this process's session records under
    `name` (None without a session or a record)."""
    held = session(home)
    return held.body.models.get(name) if held is not None else None


# --- what the verifier pins -------------------------------------------------------------------
@dataclass(frozen=True)
class TrustRoot:
    """Fingerprints the verifier holds; None where it pins nothing for that role."""

    signing: str | None
    checkpoint: str | None
    source: str

    def describe(self) -> str:
        """`anchored: ...` for reports."""
        return f"anchored: keys pinned by {self.source}"


def _fingerprint_of_pem(data: bytes, where: str) -> str:
    from cryptography.hazmat.primitives import serialization

    from appliance import keys

    try:
        return keys.fingerprint(serialization.load_pem_public_key(data))
    except (ValueError, TypeError):
        raise UsageError("not a fingerprint, a trust-root file or a PEM public key",
                         where=where) from None


def load_trust_root(value: str | None, role: str) -> TrustRoot | None:
    """Parse `--trusted-key`: `sha256:<hex>` (the key for `role`), a `trust-root.json`
    written by `keys export`, or a PEM public key. None when not given."""
    if value is None:
        return None
    if _FINGERPRINT_RE.fullmatch(value):
        return TrustRoot(value if role == "signing" else None,
                         value if role == "checkpoint" else None, "--trusted-key")
    if value.startswith("sha256:"):
        raise UsageError("a fingerprint is sha256: followed by 64 lower-case hex digits",
                         where="--trusted-key")
    path = Path(value)
    try:
        if not path.is_file():
            raise UsageError("not a fingerprint and not a regular file", where=value)
        with open(path, "rb") as handle:
            data = handle.read(_MAX_TRUST_FILE + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the trust root: {exc.strerror}", where=value) from None
    if len(data) > _MAX_TRUST_FILE:
        raise UsageError("the trust root file is too large", where=value)
    if data.lstrip().startswith(b"-----BEGIN"):
        fp = _fingerprint_of_pem(data, value)
        return TrustRoot(fp if role == "signing" else None,
                         fp if role == "checkpoint" else None, value)
    try:
        doc = json.loads(data)
        signing, checkpoint = doc["signing"], doc["checkpoint"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise UsageError("not a trust-root file written by appliance keys export",
                         where=value) from None
    for fp in (signing, checkpoint):
        if not isinstance(fp, str) or not _FINGERPRINT_RE.fullmatch(fp):
            raise UsageError("the trust-root file holds a malformed fingerprint", where=value)
    return TrustRoot(signing, checkpoint, value)


def write_trust_root(out: Path, signing: str, checkpoint: str, origin: str) -> Path:
    """The file an auditor keeps and later passes to `--trusted-key`."""
    from appliance.fsutil import atomic_write_text

    path = out / TRUST_ROOT_FILE
    doc = {"signing": signing, "checkpoint": checkpoint, "audit_origin": origin}
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n", 0o644)
    return path
