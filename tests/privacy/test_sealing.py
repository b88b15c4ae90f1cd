"""The canary set sealed in a dataset's metadata: AES-256-GCM bound to the dataset name."""

from __future__ import annotations

import base64
import os

import pytest

from appliance.errors import IntegrityError
from appliance.privacy.canaries import CanarySet, make_canaries
from appliance.privacy.sealing import seal, unseal


@pytest.fixture
def cset() -> CanarySet:
    """A small canary set."""
    canaries = tuple(make_canaries(4, repeats=(2,), kinds=("ssn",), controls_per_kind=1))
    return CanarySet(4, canaries, {canaries[0].id: 2})


def test_sealed_set_opens_with_the_key_and_hides_the_secrets(cset):
    """Seal then unseal gives the set back; the sealed text holds no secret."""
    key = os.urandom(32)
    sealed = seal(key, "ds", cset)
    assert unseal(key, "ds", sealed) == cset
    assert all(c.secret not in sealed for c in cset.canaries)
    assert seal(key, "ds", cset) != sealed  # fresh nonce every time


def test_wrong_key_other_dataset_or_flipped_bit_fail_opaquely(cset):
    """Another key, another dataset name or one flipped bit: one opaque IntegrityError."""
    key = os.urandom(32)
    sealed = seal(key, "ds", cset)
    raw = bytearray(base64.b64decode(sealed))
    raw[20] ^= 1
    for args in ((os.urandom(32), "ds", sealed), (key, "other", sealed),
                 (key, "ds", base64.b64encode(bytes(raw)).decode()), (key, "ds", "!!")):
        with pytest.raises(IntegrityError, match="does not verify"):
            unseal(*args)
