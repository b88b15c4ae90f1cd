"""The one sealing recipe under master-key subkeys (`appliance.aead`) and its three uses.

The vectors were sealed by the three separate implementations this module replaced (the
code at commit 8f2a101: `train/sealing.py`, `privacy/sealing.py` and
`service/scrub.py:wrap_pseudonym_key`) with the master key bytes(range(32)); files sealed
before the change must still open.
"""

from __future__ import annotations

import base64

import pytest

from appliance import aead
from appliance.errors import IntegrityError
from appliance.privacy import sealing as canary_sealing
from appliance.privacy.canaries import Canary, CanarySet
from appliance.service.scrub import unwrap_pseudonym_key, wrap_pseudonym_key
from appliance.train import sealing as checkpoint_sealing

MASTER = bytes(range(32))
CHECKPOINT = bytes.fromhex(
    "4150434b310afdfb84c87c2885cf8d0846f1c8fd1e3ead8c4e3ec0b0be43440dfb087833c8536a03813f"
    "d75f8f07")
"""derive_run_key(MASTER, "run-1"), then seal(key, b"tensor bytes", b"run-1/4/tensors")."""
CANARY_SET = (
    "bRzjTnky4NxQUAhdS+Khy107qMtcSoiNAva3ORxXgQHw/MvvZ2ZmKrKOuKulr8Ljtz9nmhDlqy6ABHxXhl08HvTq"
    "67XrbOSHo8ng10gE69nwOyx+FWE/v2K4hXXXMjHPyMrNUAijXKAh6X1AFNzzOqmRbyNYPjMLvOQaiA0x1to7o2Jm"
    "u+qyoY/7siidOgrmCP4aR2Gc/1ueuYCYYsZV0mZs4g==")
"""seal(MASTER, "ds", CanarySet(7, (Canary("c0", "ssn", "123-45-6789", 2),), {"c0": 2}))."""
PSEUDONYM_KEY = "ka7ZkBBMWsfIq1xH9wfTVJv1Lo25Cg30VGxwgoYBnh6wME9o5My8RftEkzojEv6jiXBPe8f+C/dW3FWu"
"""wrap_pseudonym_key(MASTER, "ds", bytes(range(32, 64)))."""


def test_checkpoint_sealed_before_the_change_opens() -> None:
    """A checkpoint blob written by the former train/sealing.py opens unchanged."""
    key = checkpoint_sealing.derive_run_key(MASTER, "run-1")
    assert checkpoint_sealing.unseal(key, CHECKPOINT, b"run-1/4/tensors", "ck") == \
        b"tensor bytes"


def test_canary_set_sealed_before_the_change_opens() -> None:
    """A canary set sealed by the former privacy/sealing.py opens unchanged."""
    expected = CanarySet(7, (Canary("c0", "ssn", "123-45-6789", 2),), {"c0": 2})
    assert canary_sealing.unseal(MASTER, "ds", CANARY_SET) == expected


def test_pseudonym_key_wrapped_before_the_change_unwraps() -> None:
    """A pseudonym key wrapped by the former service/scrub.py unwraps, and a new wrap
    round-trips."""
    key = bytes(range(32, 64))
    assert unwrap_pseudonym_key(MASTER, "ds", PSEUDONYM_KEY) == key
    assert unwrap_pseudonym_key(MASTER, "ds", wrap_pseudonym_key(MASTER, "ds", key)) == key


def test_every_flipped_bit_wrong_binding_or_key_fails_opaquely() -> None:
    """Each single-bit change, another associated data, another use's subkey or a
    truncated blob: one IntegrityError that names no check."""
    key = aead.subkey(MASTER, b"test/v1")
    blob = aead.seal(key, b"secret", b"here")
    for i in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[i // 8] ^= 1 << (i % 8)
        with pytest.raises(IntegrityError, match=r"^x does not verify$"):
            aead.unseal(key, bytes(bad), b"here", what="x", where="w")
    for k, b, ad in ((key, blob, b"there"), (aead.subkey(MASTER, b"test/v2"), blob, b"here"),
                     (key, blob[:27], b"here")):
        with pytest.raises(IntegrityError, match=r"^x does not verify$"):
            aead.unseal(k, b, ad, what="x", where="w")
    assert aead.unseal(key, blob, b"here", what="x", where="w") == b"secret"


def test_seal_text_refuses_bad_base64_and_uses_a_fresh_nonce() -> None:
    """Text that is not base64 is one IntegrityError; two seals of the same data differ."""
    with pytest.raises(IntegrityError, match="does not verify"):
        aead.unseal_text(MASTER, b"i", "!!", b"", what="x", where="w")
    first, second = (aead.seal_text(MASTER, b"i", b"d", b"") for _ in range(2))
    assert first != second and base64.b64decode(first) != base64.b64decode(second)
