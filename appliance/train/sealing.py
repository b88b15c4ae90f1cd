"""Checkpoint encryption at rest: `appliance.aead` sealing under a per-run subkey of the
vault master key (HKDF-SHA256 info `appliance/checkpoint/v1/<run-id>`).

A sealed file is `MAGIC || nonce(12) || ciphertext+tag`; the associated data binds the run
id and the file's role, so a file cannot be swapped between runs or roles undetected.
"""

from __future__ import annotations

from appliance import aead
from appliance.errors import IntegrityError

MAGIC = b"APCK1\n"
INFO = b"appliance/checkpoint/v1/"


def derive_run_key(master_key: bytes, run_id: str) -> bytes:
    """The 32-byte checkpoint key of one run."""
    return aead.subkey(master_key, INFO + run_id.encode("utf-8"))


def seal(key: bytes, data: bytes, aad: bytes) -> bytes:
    """Encrypt and authenticate `data` bound to `aad`."""
    return MAGIC + aead.seal(key, data, aad)


def unseal(key: bytes, blob: bytes, aad: bytes, where: str) -> bytes:
    """Decrypt a sealed blob; IntegrityError on any change, wrong key or wrong binding."""
    if not blob.startswith(MAGIC):
        raise IntegrityError("checkpoint file does not verify", where=where)
    return aead.unseal(key, blob[len(MAGIC):], aad, what="checkpoint file", where=where)
