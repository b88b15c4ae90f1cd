"""Signed checkpoints: C2SP tlog-checkpoint bodies in C2SP signed-note envelopes, Ed25519.

Body: the origin line, the tree size in decimal, the base64 root hash, each ending in a
newline. Note: the body, an empty line, then one signature line per signer:
`— <key name> <base64(key id || signature)>`. For Ed25519 the key id is the first four bytes
of SHA-256(key name || 0x0A || 0x01 || 32-byte public key) and the signature covers the body
bytes. This is the only module that touches the checkpoint key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Any, TypedDict

from appliance.errors import AuditError

SIG_PREFIX = "\u2014 "
ED25519_TYPE = b"\x01"
MAX_NOTE_BYTES = 8192
_ORIGIN_RE = re.compile(r"[\x21-\x7e]{1,255}")


class CheckpointSummary(TypedDict):
    """A checkpoint as reports show it (`appliance audit checkpoint --json`): the log's
    origin, its size in entries, the Merkle root in hex."""

    origin: str
    size: int
    root: str


@dataclass(frozen=True)
class Checkpoint:
    """One verified or to-be-signed checkpoint."""

    origin: str
    size: int
    root: bytes

    def body(self) -> bytes:
        """The C2SP tlog-checkpoint body."""
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\n".encode()

    def as_dict(self) -> CheckpointSummary:
        """Plain data for reports."""
        return {"origin": self.origin, "size": self.size, "root": self.root.hex()}


def origin_for(checkpoint_fingerprint: str) -> str:
    """The log's origin line: unique per home, derived from its checkpoint key."""
    return f"appliance.local/audit/{checkpoint_fingerprint.removeprefix('sha256:')[:16]}"


def _raw_public(public_key: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw))


def key_id(name: str, public_key: Any) -> bytes:
    """The signed-note key id of an Ed25519 key."""
    data = name.encode() + b"\n" + ED25519_TYPE + _raw_public(public_key)
    return hashlib.sha256(data).digest()[:4]


def verifier_key(name: str, public_key: Any) -> str:
    """The signed-note verifier key string `name+hexid+base64(type||key)`."""
    return (f"{name}+{key_id(name, public_key).hex()}+"
            + base64.b64encode(ED25519_TYPE + _raw_public(public_key)).decode("ascii"))


def sign(checkpoint: Checkpoint, private_key: Any) -> bytes:
    """The signed note for `checkpoint`, key name = origin."""
    body = checkpoint.body()
    name = checkpoint.origin
    signature = private_key.sign(body)
    blob = base64.b64encode(key_id(name, private_key.public_key()) + signature).decode("ascii")
    return body + b"\n" + f"{SIG_PREFIX}{name} {blob}\n".encode()


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) < 4 or lines[-1] != "":
        raise ValueError("body too short")
    origin, size_text, root_text = lines[0], lines[1], lines[2]
    if not _ORIGIN_RE.fullmatch(origin) or not re.fullmatch(r"0|[1-9][0-9]{0,18}", size_text):
        raise ValueError("bad origin or size")
    root = base64.b64decode(root_text, validate=True)
    if len(root) != 32:
        raise ValueError("bad root hash")
    return Checkpoint(origin, int(size_text), root)


def verify(note: bytes, public_key: Any, *, origin: str | None = None) -> Checkpoint:
    """Parse a signed note and check its Ed25519 signature by `public_key` (key name = the
    origin). AuditError when it is malformed, unsigned by that key, or for another log."""
    from cryptography.exceptions import InvalidSignature

    try:
        if len(note) > MAX_NOTE_BYTES:
            raise ValueError("too large")
        text = note.decode("utf-8")
        body, sep, sigs = text.partition("\n\n")
        if not sep:
            raise ValueError("no signature block")
        body += "\n"
        checkpoint = _parse_body(body)
        want = key_id(checkpoint.origin, public_key)
        found = False
        for line in sigs.split("\n"):
            if not line:
                continue
            if not line.startswith(SIG_PREFIX):
                raise ValueError("bad signature line")
            name, _, blob_text = line[len(SIG_PREFIX):].rpartition(" ")
            blob = base64.b64decode(blob_text, validate=True)
            if name == checkpoint.origin and blob[:4] == want and len(blob) == 68:
                public_key.verify(blob[4:], body.encode())
                found = True
        if not found:
            raise ValueError("no signature by the checkpoint key")
    except (ValueError, UnicodeDecodeError, binascii.Error, InvalidSignature):
        raise AuditError("a checkpoint's signature does not verify",
                         hint="the checkpoint was forged, altered, or signed by another key"
                         ) from None
    if origin is not None and checkpoint.origin != origin:
        raise AuditError("a checkpoint belongs to another log",
                         hint=f"expected origin {origin}")
    return checkpoint
