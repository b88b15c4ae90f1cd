"""Creating a home (`appliance init`) and exporting its public keys."""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TypedDict

from appliance import __version__, trust
from appliance.errors import HomeError, PolicyError
from appliance.fsutil import atomic_write_bytes, atomic_write_text
from appliance.home import Home

MARKER_VERSION = 1


class InitSummary(TypedDict):
    """`appliance init --json`: the new home, its policy and its two key fingerprints."""

    home: str
    policy_digest: str
    policy_name: str
    signing_key: str
    checkpoint_key: str
    audit_origin: str


def _refuse_existing(home: Home) -> None:
    if home.root.is_symlink() or (home.root.exists() and not home.root.is_dir()):
        raise HomeError("the home path exists and is not a directory", where=str(home.root))
    if home.root.is_dir() and home.root.stat().st_uid != os.geteuid():
        raise HomeError("the home directory belongs to another user", where=str(home.root),
                        hint="init only into a directory you own (or a new path)")
    if home.root.is_dir() and any(home.root.iterdir()):
        what = ("is already initialised" if home.is_initialised()
                else "is not empty (a previous init may have been interrupted)")
        raise HomeError(f"the home {what}", where=str(home.root),
                        hint="refusing to overwrite; choose another --home or remove it")


def init_home(home: Home, passphrase: bytes, policy_path: str | Path | None = None) -> InitSummary:
    """Create a complete home; refuses any existing non-empty directory. The marker is
    written last, so a home without it is known to be incomplete."""
    from appliance import audit, keys, masterkey
    from appliance.audit.notes import origin_for
    from appliance.policy import load_policy, policy_digest
    from appliance.resources import shipped_policy

    source = Path(policy_path) if policy_path else shipped_policy("default")
    policy = load_policy(source)  # validated before anything is written
    raw = source.read_bytes()
    _refuse_existing(home)
    home.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    home.root.chmod(0o700)  # an existing empty directory may have been 0777
    for directory in (home.audit_dir, home.vault_dir, home.artifacts_dir, home.keys_dir,
                      home.models_dir, home.runs_dir, home.policy_file.parent):
        directory.mkdir(mode=0o700, exist_ok=True)
    atomic_write_bytes(home.policy_file, raw, 0o600)
    if load_policy(home.policy_file) != policy:
        raise PolicyError("the copied policy differs from its source", where=str(source))
    digest = policy_digest(policy)
    master_key = masterkey.create(home, passphrase, policy)
    fps = keys.generate(home, passphrase, policy)
    signer = keys.load_checkpoint_key(home, passphrase, policy)
    audit.unlock(home, passphrase, policy, key=signer)
    origin = origin_for(fps.checkpoint)
    audit.record(home, "home.created", policy_digest=digest, signing_key=fps.signing,
                 checkpoint_key=fps.checkpoint, audit_origin=origin, version=__version__)
    audit.record(home, "policy.loaded", policy_digest=digest, policy_name=policy.meta.name)
    audit.checkpoint(home)
    trust.create(home, master_key, signer, digest)
    marker = {"version": MARKER_VERSION, "appliance": __version__,
              "created": _dt.datetime.now(_dt.UTC).isoformat(), "policy_digest": digest,
              "keys": {"signing": fps.signing, "checkpoint": fps.checkpoint},
              "audit_origin": origin}
    atomic_write_text(home.marker, json.dumps(marker, indent=2, sort_keys=True) + "\n", 0o600)
    return {"home": str(home.root), "policy_digest": digest, "policy_name": policy.meta.name,
            "signing_key": fps.signing, "checkpoint_key": fps.checkpoint, "audit_origin": origin}


class KeysExport(TypedDict):
    """`keys export --json`: the files written and the two key fingerprints."""

    files: list[str]
    signing: str
    checkpoint: str


def export_keys(home: Home, out: str | Path) -> KeysExport:
    """Write the home's public keys (PEM) and `trust-root.json` (their fingerprints, for
    `--trusted-key`) into `out` for auditors; records `keys.exported`."""
    from appliance import audit, keys
    from appliance.audit.notes import origin_for

    trust.require_home(home)
    written = keys.export_public(home, Path(out))
    fps = keys.fingerprints(home)
    written.append(trust.write_trust_root(Path(out), fps.signing, fps.checkpoint,
                                          origin_for(fps.checkpoint)))
    audit.record(home, "keys.exported", signing_key=fps.signing, checkpoint_key=fps.checkpoint)
    return {"files": [str(p) for p in written], "signing": fps.signing,
            "checkpoint": fps.checkpoint}
