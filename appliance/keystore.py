"""Secrets sealed under the operator's passphrase.

A sealed secret is a small JSON document: Argon2id (RFC 9106) derives a 256-bit key from the
passphrase and a random 16-byte salt; AES-256-GCM encrypts the secret with the document's
parameters and a caller-given context (what the secret is for) as associated data, so a
sealed file cannot be passed off as another. Stored KDF parameters are capped on read so a
crafted file cannot demand unbounded memory or time. This is the only module that derives
keys from passphrases.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import HomeError, IntegrityError, PassphraseError
from appliance.fsutil import loads_json, read_regular

FORMAT = "appliance-sealed-v1"
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
MAX_SEALED_BYTES = 64 * 1024
"""Largest sealed file read (a sealed private key is about 1 KiB)."""


@dataclass(frozen=True)
class KdfParams:
    """Argon2id cost parameters."""

    memory_kib: int
    iterations: int
    lanes: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("not base64 text")
    return base64.b64decode(text, validate=True)


def derive_key(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    """Argon2id(passphrase, salt) -> 32 bytes."""
    from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

    kdf = Argon2id(salt=salt, length=KEY_BYTES, iterations=params.iterations,
                   lanes=params.lanes, memory_cost=params.memory_kib)
    return kdf.derive(passphrase)


def _aad(header: dict[str, Any], context: str) -> bytes:
    fields = {k: header[k] for k in ("format", "kdf", "salt", "memory_kib", "iterations",
                                     "lanes", "aead", "nonce")}
    return json.dumps({"context": context, **fields}, sort_keys=True,
                      separators=(",", ":")).encode("utf-8")


def seal(secret: bytes, passphrase: bytes, params: KdfParams, context: str) -> bytes:
    """Encrypt `secret` under `passphrase`; returns the sealed JSON document."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header: dict[str, Any] = {
        "format": FORMAT, "kdf": "argon2id", "salt": _b64(os.urandom(SALT_BYTES)),
        "memory_kib": params.memory_kib, "iterations": params.iterations,
        "lanes": params.lanes, "aead": "aes-256-gcm", "nonce": _b64(os.urandom(NONCE_BYTES)),
    }
    key = derive_key(passphrase, _unb64(header["salt"]), params)
    header["ciphertext"] = _b64(AESGCM(key).encrypt(_unb64(header["nonce"]), secret,
                                                    _aad(header, context)))
    return (json.dumps(header, indent=2, sort_keys=True) + "\n").encode("utf-8")


def read_sealed(path: Path, *, missing: str, hint: str) -> bytes:
    """The bytes of a sealed file in the home: HomeError(`missing`, `hint`) when absent;
    IntegrityError when it is not a regular file or is larger than any sealed file."""
    if not os.path.lexists(path):
        raise HomeError(missing, where=str(path), hint=hint)
    return read_regular(path, max_bytes=MAX_SEALED_BYTES, what="a sealed key file",
                        error=IntegrityError)


def _parse(blob: bytes, caps: KdfParams) -> tuple[dict[str, Any], KdfParams]:
    try:
        header = loads_json(blob)
        if not isinstance(header, dict):
            raise ValueError("not an object")
        if header.get("format") != FORMAT or header.get("kdf") != "argon2id" \
                or header.get("aead") != "aes-256-gcm":
            raise ValueError("unknown format")
        params = KdfParams(int(header["memory_kib"]), int(header["iterations"]),
                           int(header["lanes"]))
        if len(_unb64(header["salt"])) != SALT_BYTES or \
                len(_unb64(header["nonce"])) != NONCE_BYTES:
            raise ValueError("bad salt or nonce")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError("a sealed key file is malformed") from None
    if (params.memory_kib > caps.memory_kib or params.iterations > caps.iterations
            or params.lanes > caps.lanes or min(params.memory_kib, params.iterations,
                                                 params.lanes) < 1):
        raise IntegrityError("a sealed key file asks for KDF parameters above the policy's caps",
                             hint="storage.kdf_max in the policy bounds what is accepted")
    return header, params


def unseal(blob: bytes, passphrase: bytes, caps: KdfParams, context: str) -> bytes:
    """Decrypt a sealed document. A wrong passphrase raises PassphraseError; a malformed or
    tampered document raises IntegrityError or PassphraseError (GCM cannot tell them apart)."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    header, params = _parse(blob, caps)
    key = derive_key(passphrase, _unb64(header["salt"]), params)
    try:
        return AESGCM(key).decrypt(_unb64(header["nonce"]), _unb64(header["ciphertext"]),
                                   _aad(header, context))
    except (InvalidTag, ValueError):
        raise PassphraseError("wrong passphrase (or the key file was altered)",
                              hint="check the passphrase file; keys are unchanged") from None


def reseal(blob: bytes, old: bytes, new: bytes, params: KdfParams, caps: KdfParams,
           context: str) -> bytes:
    """Re-encrypt a sealed secret under a new passphrase (the secret itself is unchanged)."""
    return seal(unseal(blob, old, caps, context), new, params, context)
