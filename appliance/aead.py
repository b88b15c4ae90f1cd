"""Sealing under a subkey of the vault master key: the one recipe for small secrets that
live beside the vault (checkpoints, a dataset's canary set, its kept pseudonym key).

HKDF-SHA256 derives a 256-bit subkey from the master key and a per-use `info` label, so no
two uses share a key; AES-256-GCM with a random 96-bit nonce encrypts, and the caller's
associated data binds the blob to where it belongs (a run and a role, a dataset name). A
sealed blob is `nonce(12) || ciphertext || tag(16)`; a failure to open says nothing about
which check failed.
"""

from __future__ import annotations

import base64
import os

from appliance.errors import IntegrityError

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16


def subkey(master_key: bytes, info: bytes) -> bytes:
    """The 256-bit key of one use (`info` names it) derived from the master key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=info).derive(master_key)


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    """`data` encrypted and authenticated under `key`, bound to `aad`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, data, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, *, what: str, where: str) -> bytes:
    """The plaintext of a sealed blob; IntegrityError ("WHAT does not verify") on any change,
    a wrong key or a wrong binding."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise IntegrityError(f"{what} does not verify", where=where)
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag:
        raise IntegrityError(f"{what} does not verify", where=where) from None


def seal_text(master_key: bytes, info: bytes, data: bytes, aad: bytes) -> str:
    """`data` sealed under the master key's `info` subkey, base64 (for JSON metadata)."""
    return base64.b64encode(seal(subkey(master_key, info), data, aad)).decode("ascii")


def unseal_text(master_key: bytes, info: bytes, text: str, aad: bytes, *, what: str,
                where: str) -> bytes:
    """Inverse of seal_text; IntegrityError (opaque) on bad base64 or any failed check."""
    try:
        blob = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeError):
        raise IntegrityError(f"{what} does not verify", where=where) from None
    return unseal(subkey(master_key, info), blob, aad, what=what, where=where)
