"""Checkpoint encryption at rest: AES-256-GCM under a per-run key derived from the vault
master key with HKDF-SHA256. One small module so the vault's API can replace it later.

A sealed blob is `MAGIC || nonce(12) || ciphertext+tag`; the associated data binds the run
id and the file's role, so a file cannot be swapped between runs or roles undetected.
"""

from __future__ import annotations

import os

from appliance.errors import IntegrityError

MAGIC = b"APCK1\n"
INFO = b"appliance/checkpoint/v1/"
NONCE = 12


def derive_run_key(master_key: bytes, run_id: str) -> bytes:
    """The 32-byte checkpoint key of one run."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=INFO + run_id.encode("utf-8")).derive(master_key)


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `data` bound to `aad`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE)
    return MAGIC + nonce + AESGCM(key).encrypt(nonce, data, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, where: str) -> bytes:
    """Decrypt a sealed blob; IntegrityError on any change, wrong key or wrong binding."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + NONCE + 16:
        raise IntegrityError("checkpoint file does not verify", where=where)
    nonce = blob[len(MAGIC):len(MAGIC) + NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(MAGIC) + NONCE:], aad)
    except InvalidTag:
        raise IntegrityError("checkpoint file does not verify", where=where) from None
