"""The home's operator keys: an ECDSA P-256 artifact signing key and an Ed25519 key for
audit checkpoints.

Private keys are PKCS#8 DER sealed under the passphrase with `appliance.keystore`
(Argon2id + AES-256-GCM, parameters from the policy, capped on read), each with its own
context so one sealed file cannot stand in for the other. Public keys sit beside them as PEM
SubjectPublicKeyInfo. A key's fingerprint is `sha256:` of its DER SubjectPublicKeyInfo, the
form `policy.signing.trusted_keys` uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import keystore, masterkey
from appliance.errors import HomeError, IntegrityError
from appliance.fsutil import atomic_write_bytes, read_regular
from appliance.home import Home
from appliance.masterkey import kdf_caps, kdf_params
from appliance.policy import Policy

SIGNING_SEALED = "signing-ecdsa-p256.sealed.json"
SIGNING_PUBLIC = "signing-ecdsa-p256.pub.pem"
CHECKPOINT_SEALED = "checkpoint-ed25519.sealed.json"
CHECKPOINT_PUBLIC = "checkpoint-ed25519.pub.pem"
SIGNING_CONTEXT = "appliance/artifact-signing-key/v1"
CHECKPOINT_CONTEXT = "appliance/audit-checkpoint-key/v1"
MAX_PEM_BYTES = 16 * 1024


@dataclass(frozen=True)
class KeyFingerprints:
    """Fingerprints of the home's two public keys."""

    signing: str
    checkpoint: str


def public_der(public_key: Any) -> bytes:
    """DER SubjectPublicKeyInfo of a public key."""
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def public_pem(public_key: Any) -> bytes:
    """PEM SubjectPublicKeyInfo of a public key."""
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def fingerprint(public_key: Any) -> str:
    """`sha256:<hex>` of the DER SubjectPublicKeyInfo."""
    return "sha256:" + hashlib.sha256(public_der(public_key)).hexdigest()


def load_public_pem(path: Path) -> Any:
    """Read a PEM public key (size-capped); IntegrityError when it is not one."""
    from cryptography.hazmat.primitives import serialization

    data = read_regular(path, max_bytes=MAX_PEM_BYTES, what="a public key file",
                        error=HomeError)
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise IntegrityError("not a PEM public key", where=str(path)) from None


def _private_der(private_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(private_key.private_bytes(serialization.Encoding.DER,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))


def _write_pair(home: Home, private_key: Any, *, names: tuple[str, str], context: str,
                passphrase: bytes, policy: Policy) -> str:
    sealed_name, public_name = names
    sealed_path = home.keys_dir / sealed_name
    if sealed_path.exists() or (home.keys_dir / public_name).exists():
        raise HomeError("a key already exists", where=str(sealed_path),
                        hint="refusing to overwrite it")
    sealed = keystore.seal(_private_der(private_key), passphrase, kdf_params(policy), context)
    atomic_write_bytes(sealed_path, sealed)
    atomic_write_bytes(home.keys_dir / public_name, public_pem(private_key.public_key()), 0o644)
    return fingerprint(private_key.public_key())


def generate(home: Home, passphrase: bytes, policy: Policy) -> KeyFingerprints:
    """Create and seal both key pairs; refuses to replace existing keys."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    signing = _write_pair(home, ec.generate_private_key(ec.SECP256R1()),
                          names=(SIGNING_SEALED, SIGNING_PUBLIC), context=SIGNING_CONTEXT,
                          passphrase=passphrase, policy=policy)
    checkpoint = _write_pair(home, ed25519.Ed25519PrivateKey.generate(),
                             names=(CHECKPOINT_SEALED, CHECKPOINT_PUBLIC),
                             context=CHECKPOINT_CONTEXT, passphrase=passphrase, policy=policy)
    return KeyFingerprints(signing, checkpoint)


def _unseal(home: Home, name: str, context: str, passphrase: bytes, policy: Policy) -> Any:
    from cryptography.hazmat.primitives import serialization

    blob = keystore.read_sealed(home.keys_dir / name, missing="a sealed private key is missing",
                                hint="the home is incomplete; restore it from a backup")
    der = keystore.unseal(blob, passphrase, kdf_caps(policy), context)
    return serialization.load_der_private_key(der, password=None)


def load_signing_key(home: Home, passphrase: bytes, policy: Policy) -> Any:
    """Unseal the ECDSA P-256 artifact signing key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _unseal(home, SIGNING_SEALED, SIGNING_CONTEXT, passphrase, policy)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise IntegrityError("the artifact signing key is not ECDSA P-256")
    return key


def load_checkpoint_key(home: Home, passphrase: bytes, policy: Policy) -> Any:
    """Unseal the Ed25519 audit checkpoint key."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = _unseal(home, CHECKPOINT_SEALED, CHECKPOINT_CONTEXT, passphrase, policy)
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise IntegrityError("the audit checkpoint key is not Ed25519")
    return key


def signing_public_key(home: Home) -> Any:
    """The home's artifact signing public key."""
    return load_public_pem(home.keys_dir / SIGNING_PUBLIC)


def checkpoint_public_key(home: Home) -> Any:
    """The home's audit checkpoint public key."""
    return load_public_pem(home.keys_dir / CHECKPOINT_PUBLIC)


def fingerprints(home: Home) -> KeyFingerprints:
    """Fingerprints of the home's public keys."""
    return KeyFingerprints(fingerprint(signing_public_key(home)),
                           fingerprint(checkpoint_public_key(home)))


def export_public(home: Home, out: Path) -> list[Path]:
    """Copy both public keys (PEM) into `out` for auditors; returns the written paths."""
    written = []
    for name in (SIGNING_PUBLIC, CHECKPOINT_PUBLIC):
        key = load_public_pem(home.keys_dir / name)
        atomic_write_bytes(out / name, public_pem(key), 0o644)
        written.append(out / name)
    return written


def change_passphrase(home: Home, old: bytes, new: bytes, policy: Policy) -> None:
    """Re-seal the master key and both private keys under a new passphrase (the keys
    themselves are unchanged, so every signature, MAC and dataset stays valid). All three
    are re-sealed in memory before the first is written."""
    targets = [(masterkey.path_of(home), masterkey.CONTEXT),
               (home.keys_dir / SIGNING_SEALED, SIGNING_CONTEXT),
               (home.keys_dir / CHECKPOINT_SEALED, CHECKPOINT_CONTEXT)]
    sealed = [(path, keystore.reseal(keystore.read_sealed(path, missing="a sealed key is missing",
                                                          hint="run appliance init"),
                                     old, new, kdf_params(policy), kdf_caps(policy), context))
              for path, context in targets if path.exists()]
    for path, blob in sealed:
        atomic_write_bytes(path, blob)
