"""The canary set sealed under the vault master key, so that it sits in the dataset's
encrypted metadata without `dataset show` (which prints that metadata) revealing it.

`appliance.aead` sealing under the master key's `appliance/privacy/canary-set/v1` subkey,
the dataset name as associated data (a sealed set cannot be moved to another dataset),
base64.
"""

from __future__ import annotations

import json

from appliance import aead
from appliance.errors import IntegrityError
from appliance.privacy.canaries import CanarySet

INFO = b"appliance/privacy/canary-set/v1"
WHAT = "the dataset's canary set"


def seal(master_key: bytes, dataset: str, canaries: CanarySet) -> str:
    """The canary set encrypted and authenticated, base64."""
    blob = json.dumps(canaries.as_dict(), sort_keys=True).encode("utf-8")
    return aead.seal_text(master_key, INFO, blob, dataset.encode("utf-8"))


def unseal(master_key: bytes, dataset: str, sealed: str) -> CanarySet:
    """The canary set, or IntegrityError (opaque) if it was changed, moved or mis-keyed."""
    where = f"dataset {dataset!r}"
    blob = aead.unseal_text(master_key, INFO, sealed, dataset.encode("utf-8"), what=WHAT,
                            where=where)
    try:
        return CanarySet.from_dict(json.loads(blob))
    except (ValueError, UnicodeError):
        raise IntegrityError(f"{WHAT} does not verify", where=where) from None
