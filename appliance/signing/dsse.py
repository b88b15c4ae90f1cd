"""DSSE envelopes in Sigstore bundle v0.3 JSON, signed with ECDSA P-256 (key mode).

The same shape OpenSSF model-signing v1.0 writes for key-based signatures: the bundle's
verification material carries only a hint (hex sha256 of the PEM public key) and no
transparency-log entries; the envelope signature is ECDSA-SHA256 over the DSSE v1
pre-authentication encoding of the payload. This is the only module that touches the
artifact signing key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from appliance.errors import SigningError

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def key_hint(public_key: Any) -> str:
    """model-signing's key hint: hex sha256 of the PEM SubjectPublicKeyInfo."""
    from appliance.keys import public_pem

    return hashlib.sha256(public_pem(public_key)).hexdigest()


def sign_statement(statement: dict[str, Any], private_key: Any) -> bytes:
    """A Sigstore bundle (JSON bytes) holding `statement` in a signed DSSE envelope."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    payload = json.dumps(statement, indent=2, sort_keys=True).encode("utf-8")
    signature = private_key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(private_key.public_key())},
                                 "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": IN_TOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return (json.dumps(bundle, indent=2) + "\n").encode("utf-8")


def open_bundle(data: bytes, public_key: Any) -> dict[str, Any]:
    """Check a bundle's signature by `public_key` and return the statement it signs.

    Raises SigningError for anything malformed or a signature that does not verify.
    """
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    try:
        if len(data) > MAX_BUNDLE_BYTES:
            raise ValueError("too large")
        bundle = json.loads(data)
        if bundle["mediaType"] != BUNDLE_MEDIA_TYPE:
            raise ValueError("media type")
        hint = bundle["verificationMaterial"]["publicKey"].get("hint")
        if hint not in (None, key_hint(public_key)):
            raise ValueError("key hint")
        envelope = bundle["dsseEnvelope"]
        if envelope["payloadType"] != IN_TOTO_PAYLOAD_TYPE or len(envelope["signatures"]) != 1:
            raise ValueError("envelope")
        payload = base64.b64decode(envelope["payload"], validate=True)
        signature = base64.b64decode(envelope["signatures"][0]["sig"], validate=True)
        public_key.verify(signature, pae(IN_TOTO_PAYLOAD_TYPE, payload),
                          ec.ECDSA(hashes.SHA256()))
        statement = json.loads(payload)
        if not isinstance(statement, dict) or \
                statement.get("_type") != "https://in-toto.io/Statement/v1":
            raise ValueError("statement type")
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error, InvalidSignature):
        raise SigningError("the signature does not verify") from None
    return statement
