"""The on-disk layout of one vault file (docs/vault-format.md), with no cryptography.

    prefix   = MAGIC (8) | version u16 BE | len u32 BE | identity JSON      (bound as context)
    envelope = len u32 BE | envelope JSON                                    (the wrapped key)
    body     = Cobblestone256 ciphertext                                     (records)
    trailer  = summary JSON | len u32 BE | END_MAGIC (8)                     (public summary)

Everything here is parsing and encoding; malformed input raises IntegrityError (opaque).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO

from appliance.errors import IntegrityError

MAGIC = b"\x89APVLT\r\n"
END_MAGIC = b"\nAPVEND\x00"
FORMAT_NAME = "appliance-vault"
FORMAT_VERSION = 1
MAX_SECTION_BYTES = 64 * 1024
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
PREFIX_FIXED = len(MAGIC) + _U16.size + _U32.size
TRAILER_FIXED = _U32.size + len(END_MAGIC)


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON (NaN and Infinity refused)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _section(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IntegrityError("verification failed") from None
    if not isinstance(value, dict):
        raise IntegrityError("verification failed")
    return value


def encode_prefix(identity: dict[str, Any]) -> bytes:
    """MAGIC, version and the identity JSON: the bytes bound to the body and the key wrap."""
    body = canonical_json(identity)
    return MAGIC + _U16.pack(FORMAT_VERSION) + _U32.pack(len(body)) + body


def encode_envelope(envelope: dict[str, Any]) -> bytes:
    """The length-prefixed key envelope."""
    body = canonical_json(envelope)
    return _U32.pack(len(body)) + body


def encode_trailer(summary: dict[str, Any]) -> bytes:
    """The public summary, its length and the end marker."""
    body = canonical_json(summary)
    return body + _U32.pack(len(body)) + END_MAGIC


@dataclass(frozen=True)
class Parsed:
    """The cleartext parts of a vault file and where its body lies."""

    prefix: bytes
    identity: dict[str, Any]
    envelope_offset: int
    envelope_len: int
    envelope: dict[str, Any]
    body_offset: int
    body_len: int
    summary: dict[str, Any]
    size: int


def _read_exact(handle: BinaryIO, n: int) -> bytes:
    data = handle.read(n)
    if len(data) != n:
        raise IntegrityError("verification failed")
    return data


def parse(handle: BinaryIO, size: int) -> Parsed:
    """Parse the prefix, envelope and trailer of a vault file of `size` bytes."""
    head = _read_exact(handle, PREFIX_FIXED)
    if head[:len(MAGIC)] != MAGIC:
        raise IntegrityError("not a vault file")
    (version,) = _U16.unpack_from(head, len(MAGIC))
    (id_len,) = _U32.unpack_from(head, len(MAGIC) + _U16.size)
    if version != FORMAT_VERSION or id_len > MAX_SECTION_BYTES:
        raise IntegrityError("verification failed")
    id_raw = _read_exact(handle, id_len)
    identity = _section(id_raw)
    if identity.get("format") != FORMAT_NAME or identity.get("version") != version:
        raise IntegrityError("verification failed")
    env_offset = PREFIX_FIXED + id_len
    (env_len,) = _U32.unpack(_read_exact(handle, _U32.size))
    if env_len > MAX_SECTION_BYTES:
        raise IntegrityError("verification failed")
    envelope = _section(_read_exact(handle, env_len))
    body_offset = env_offset + _U32.size + env_len
    if size < body_offset + TRAILER_FIXED:
        raise IntegrityError("verification failed")
    handle.seek(size - TRAILER_FIXED)
    tail = _read_exact(handle, TRAILER_FIXED)
    (sum_len,) = _U32.unpack_from(tail, 0)
    if tail[_U32.size:] != END_MAGIC or sum_len > MAX_SECTION_BYTES:
        raise IntegrityError("verification failed")
    body_len = size - TRAILER_FIXED - sum_len - body_offset
    if body_len < 0:
        raise IntegrityError("verification failed")
    handle.seek(body_offset + body_len)
    summary = _section(_read_exact(handle, sum_len))
    handle.seek(body_offset)
    return Parsed(head + id_raw, identity, env_offset, _U32.size + env_len, envelope,
                  body_offset, body_len, summary, size)
