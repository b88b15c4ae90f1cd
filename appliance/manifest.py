"""The home manifest: the facts verification relies on, bound to the home's keys.

`HOME/manifest.json` holds a body (key fingerprints, the active policy's digest, recorded
models' digests, datasets' digests, the newest audit checkpoint's size) and two seals over
its RFC 8785 canonical form:

- `mac`: HMAC-SHA256 under a key derived (HKDF-SHA256, own `info` label) from the vault
  master key. Only a process that knows the passphrase can make or check it, so the body is
  authenticated against anyone who can write the home but does not know the passphrase.
- `signature`: Ed25519 by the audit checkpoint key, so a command without the passphrase can
  check the body against the checkpoint public key (which `home.json` and an auditor's
  pinned fingerprint name).

This is the only module that touches the manifest's primitives.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.errors import IntegrityError
from appliance.fsutil import atomic_write_bytes
from appliance.home import Home

FILENAME = "manifest.json"
VERSION = 1
MAC_INFO = b"appliance/home-manifest-mac/v1"
SIGNED_PREFIX = b"appliance/home-manifest/v1\n"
MAX_BYTES = 1024 * 1024


@dataclass
class Body:
    """What the manifest binds. Models and datasets map a name to its digest(s)."""

    signing_key: str
    checkpoint_key: str
    policy_digest: str
    checkpoint_size: int = 0
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)
    version: int = VERSION

    def canonical(self) -> bytes:
        """RFC 8785 bytes of the body (what both seals cover)."""
        import rfc8785

        return bytes(rfc8785.dumps(asdict(self)))


def path_of(home: Home) -> Any:
    """Where the manifest lives."""
    return home.root / FILENAME


def mac_key(master_key: bytes) -> bytes:
    """The manifest's HMAC key, derived from the vault master key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=MAC_INFO
                ).derive(master_key)


def _mac(key: bytes, body: Body) -> str:
    return hmac.new(key, body.canonical(), hashlib.sha256).hexdigest()


def write(home: Home, body: Body, key: bytes, signer: Any) -> None:
    """Seal `body` with the MAC key and the checkpoint private key, and write it."""
    signature = signer.sign(SIGNED_PREFIX + body.canonical())
    doc = {"body": asdict(body), "mac": _mac(key, body),
           "signature": base64.b64encode(signature).decode("ascii")}
    atomic_write_bytes(path_of(home), (json.dumps(doc, indent=2, sort_keys=True) + "\n"
                                       ).encode(), 0o600)


@dataclass(frozen=True)
class Sealed:
    """A manifest as read from disk, not yet checked."""

    body: Body
    mac: str
    signature: bytes


def _bad(home: Home) -> IntegrityError:
    return IntegrityError("the home manifest is unreadable or malformed", where=str(path_of(home)),
                          hint="the home was altered outside the appliance; restore it from "
                               "a backup")


def read(home: Home) -> Sealed:
    """Parse the manifest (IntegrityError when missing, oversized or malformed)."""
    path = path_of(home)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise IntegrityError("the home manifest is missing", where=str(path),
                             hint="the home was altered outside the appliance; restore it "
                                  "from a backup") from None
    except OSError as exc:
        raise IntegrityError(f"cannot read the home manifest: {exc.strerror}",
                             where=str(path)) from None
    if len(data) > MAX_BYTES:
        raise _bad(home)
    try:
        doc = json.loads(data)
        raw = doc["body"]
        body = Body(signing_key=str(raw["signing_key"]),
                    checkpoint_key=str(raw["checkpoint_key"]),
                    policy_digest=str(raw["policy_digest"]),
                    checkpoint_size=int(raw["checkpoint_size"]),
                    models={str(k): {str(a): str(b) for a, b in v.items()}
                            for k, v in raw["models"].items()},
                    datasets={str(k): str(v) for k, v in raw["datasets"].items()},
                    version=int(raw["version"]))
        return Sealed(body, str(doc["mac"]), base64.b64decode(doc["signature"], validate=True))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, binascii.Error):
        raise _bad(home) from None


def check_mac(home: Home, sealed: Sealed, key: bytes) -> Body:
    """The body, when its MAC verifies under `key`; IntegrityError otherwise."""
    if not hmac.compare_digest(_mac(key, sealed.body), sealed.mac):
        raise IntegrityError("the home manifest was rewritten outside the appliance (its MAC "
                             "does not verify under this home's master key)",
                             where=str(path_of(home)),
                             hint="keys, policy, models or audit checkpoints may have been "
                                  "replaced; restore the home from a backup")
    return sealed.body


def check_signature(home: Home, sealed: Sealed, public_key: Any) -> Body:
    """The body, when its signature verifies with the checkpoint public key."""
    from cryptography.exceptions import InvalidSignature

    try:
        public_key.verify(sealed.signature, SIGNED_PREFIX + sealed.body.canonical())
    except (InvalidSignature, ValueError):
        raise IntegrityError("the home manifest's signature does not verify with the home's "
                             "checkpoint key", where=str(path_of(home)),
                             hint="the manifest or the key was replaced; restore the home "
                                  "from a backup") from None
    return sealed.body
