"""The canary set sealed under the vault master key, so that it sits in the dataset's
encrypted metadata without `dataset show` (which prints that metadata) revealing it.

AES-256-GCM under an HKDF-SHA256 subkey of the master key (its own `info` label), the
dataset name as associated data: a sealed set cannot be moved to another dataset.
"""

from __future__ import annotations

import base64
import json
import os

from appliance.errors import IntegrityError
from appliance.privacy.canaries import CanarySet

INFO = b"appliance/privacy/canary-set/v1"
NONCE = 12


def _key(master_key: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(hashes.SHA256(), 32, salt=None, info=INFO).derive(master_key)


def seal(master_key: bytes, dataset: str, canaries: CanarySet) -> str:
    """The canary set encrypted and authenticated, base64."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(NONCE)
    blob = json.dumps(canaries.as_dict(), sort_keys=True).encode("utf-8")
    sealed = AESGCM(_key(master_key)).encrypt(nonce, blob, dataset.encode("utf-8"))
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(master_key: bytes, dataset: str, sealed: str) -> CanarySet:
    """The canary set, or IntegrityError (opaque) if it was changed, moved or mis-keyed."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        raw = base64.b64decode(sealed.encode("ascii"), validate=True)
        blob = AESGCM(_key(master_key)).decrypt(raw[:NONCE], raw[NONCE:],
                                                dataset.encode("utf-8"))
        return CanarySet.from_dict(json.loads(blob))
    except (InvalidTag, ValueError, UnicodeError):
        raise IntegrityError("the dataset's canary set does not verify",
                             where=f"dataset {dataset!r}") from None
