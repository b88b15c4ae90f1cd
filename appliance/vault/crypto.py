"""The only module of the vault that touches cryptographic primitives.

- Body: C2SP chunked encryption via `cryptography.cobblestone` (Cobblestone256, key-committing,
  truncation- and extension-detecting), one random 256-bit data key per dataset, the file's
  identity prefix (magic, format version, dataset id, name, ...) bound as its context.
- Key wrap under the home's master key: AES-256-GCM-SIV (RFC 8452, nonce-misuse resistant)
  with a random 96-bit nonce and the identity prefix as associated data.
- Key wrap for an export recipient: the keystore's Argon2id + AES-256-GCM sealing with a
  context naming the dataset's identity prefix.

Every verification failure surfaces as `IntegrityError` with no detail about which check
failed; callers add the dataset's name.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

from appliance import keystore
from appliance.errors import IntegrityError

KEY_BYTES = 32
WRAP_NONCE_BYTES = 12
BODY_CONTEXT_LABEL = b"appliance/vault/body/v1\x00"
WRAP_AAD_LABEL = b"appliance/vault/key-wrap/v1\x00"
EXPORT_CONTEXT_LABEL = "appliance/vault/export-key/v1:"
MASTER_WRAP_ALG = "aes-256-gcm-siv"
EXPORT_WRAP_ALG = "argon2id+aes-256-gcm"
# Cobblestone256 overhead: a 56-byte stream header, then 16 KiB chunks each with a 16-byte tag;
# the final (possibly empty) chunk is emitted by finalize().
STREAM_HEADER_BYTES = 56
CHUNK_BYTES = 16384
TAG_BYTES = 16
MIN_BODY_BYTES = STREAM_HEADER_BYTES + TAG_BYTES


def _corrupt() -> IntegrityError:
    return IntegrityError("verification failed")


def new_data_key() -> bytes:
    """A fresh random 256-bit data key for one dataset."""
    from cryptography.cobblestone import Cobblestone256Encryptor

    return Cobblestone256Encryptor.generate_key()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _corrupt()
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError:
        raise _corrupt() from None
    if length is not None and len(raw) != length:
        raise _corrupt()
    return raw


def _wrap_aad(prefix: bytes) -> bytes:
    return WRAP_AAD_LABEL + prefix


def wrap_for_master(master_key: bytes, data_key: bytes, prefix: bytes) -> dict[str, Any]:
    """The key envelope: `data_key` sealed under the master key, bound to `prefix`."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    nonce = os.urandom(WRAP_NONCE_BYTES)
    wrapped = AESGCMSIV(master_key).encrypt(nonce, data_key, _wrap_aad(prefix))
    return {"type": "master", "alg": MASTER_WRAP_ALG, "nonce": _b64(nonce),
            "wrapped_key": _b64(wrapped)}


def unwrap_with_master(master_key: bytes, envelope: dict[str, Any], prefix: bytes) -> bytes:
    """The data key from a master-key envelope; IntegrityError if it does not verify."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV

    if envelope.get("type") != "master" or envelope.get("alg") != MASTER_WRAP_ALG:
        raise _corrupt()
    nonce = _unb64(envelope.get("nonce"), WRAP_NONCE_BYTES)
    wrapped = _unb64(envelope.get("wrapped_key"), KEY_BYTES + TAG_BYTES)
    try:
        return AESGCMSIV(master_key).decrypt(nonce, wrapped, _wrap_aad(prefix))
    except (InvalidTag, ValueError):
        raise _corrupt() from None


def _export_context(prefix: bytes) -> str:
    return EXPORT_CONTEXT_LABEL + hashlib.sha256(prefix).hexdigest()


def wrap_for_passphrase(data_key: bytes, passphrase: bytes, params: keystore.KdfParams,
                        prefix: bytes) -> dict[str, Any]:
    """An export envelope: `data_key` sealed under a recipient passphrase (Argon2id)."""
    sealed = keystore.seal(data_key, passphrase, params, _export_context(prefix))
    return {"type": "passphrase", "alg": EXPORT_WRAP_ALG, "sealed": _b64(sealed)}


def unwrap_with_passphrase(envelope: dict[str, Any], passphrase: bytes,
                           caps: keystore.KdfParams, prefix: bytes) -> bytes:
    """The data key from an export envelope (PassphraseError on a wrong passphrase)."""
    if envelope.get("type") != "passphrase" or envelope.get("alg") != EXPORT_WRAP_ALG:
        raise _corrupt()
    key = keystore.unseal(_unb64(envelope.get("sealed")), passphrase, caps,
                          _export_context(prefix))
    if len(key) != KEY_BYTES:
        raise _corrupt()
    return key


def _body_context(prefix: bytes) -> bytes:
    return BODY_CONTEXT_LABEL + prefix


class BodyEncryptor:
    """Streaming Cobblestone256 encryption of a dataset body bound to its identity prefix."""

    def __init__(self, data_key: bytes, prefix: bytes) -> None:
        from cryptography.cobblestone import Cobblestone256Encryptor

        self._enc = Cobblestone256Encryptor(data_key, _body_context(prefix))

    def update(self, data: bytes) -> bytes:
        """Ciphertext for the complete chunks available so far."""
        return self._enc.update(data)

    def finalize(self) -> bytes:
        """The last (possibly empty) chunk, marked final."""
        return self._enc.finalize()


def plaintext_bound(body_len: int) -> int:
    """An upper bound on the plaintext length of a body of `body_len` bytes."""
    return max(0, body_len - STREAM_HEADER_BYTES)


def decrypt_body(data_key: bytes, prefix: bytes, blocks: Any, body_len: int) -> bytearray:
    """Decrypt the body read as `blocks` (an iterable of byte blocks, `body_len` in total)
    into one in-memory buffer, and return it only after `finalize()` verified the whole
    stream. On any failure the partial plaintext is wiped and IntegrityError raised."""
    from cryptography.cobblestone import Cobblestone256Decryptor
    from cryptography.exceptions import InvalidTag

    if body_len < MIN_BODY_BYTES:
        raise _corrupt()
    # update_into() wants room for whole chunks beyond the data it is given.
    out = bytearray(plaintext_bound(body_len) + 2 * CHUNK_BYTES)
    view = memoryview(out)
    pos = 0
    try:
        dec = Cobblestone256Decryptor(data_key, _body_context(prefix))
        for block in blocks:
            pos += dec.update_into(block, view[pos:])
        tail = dec.finalize()
        view[pos:pos + len(tail)] = tail
        pos += len(tail)
    except (InvalidTag, ValueError):
        view.release()
        wipe(out)
        raise _corrupt() from None
    view.release()
    del out[pos:]
    return out


def wipe(buffer: bytearray) -> None:
    """Overwrite a plaintext buffer with zeros (best effort: copies made by parsers remain
    until the garbage collector reuses their memory)."""
    import ctypes

    if buffer:
        ctypes.memset((ctypes.c_char * len(buffer)).from_buffer(buffer), 0, len(buffer))
