"""The home's vault master key: 32 random bytes sealed under the operator's passphrase.

Every dataset's own data key is wrapped by this key (envelope encryption), so changing the
passphrase re-seals this one small file and leaves every dataset's bytes unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path

from appliance import keystore
from appliance.errors import HomeError
from appliance.fsutil import atomic_write_bytes
from appliance.home import Home
from appliance.policy import Policy

CONTEXT = "appliance/vault-master-key/v1"
FILENAME = "vault-master.sealed.json"


def path_of(home: Home) -> Path:
    """Where the sealed master key lives."""
    return home.keys_dir / FILENAME


def kdf_params(policy: Policy) -> keystore.KdfParams:
    """Argon2id parameters for new seals, from the policy."""
    p = policy.storage.argon2id
    return keystore.KdfParams(p.memory_kib, p.iterations, p.lanes)


def kdf_caps(policy: Policy) -> keystore.KdfParams:
    """Caps on stored Argon2id parameters, from the policy."""
    c = policy.storage.kdf_max
    return keystore.KdfParams(c.memory_kib, c.iterations, c.lanes)


def create(home: Home, passphrase: bytes, policy: Policy) -> bytes:
    """Generate and seal a new master key (returned); refuses to replace an existing one."""
    path = path_of(home)
    if path.exists():
        raise HomeError("a vault master key already exists", where=str(path),
                        hint="refusing to overwrite it")
    key = os.urandom(keystore.KEY_BYTES)
    atomic_write_bytes(path, keystore.seal(key, passphrase, kdf_params(policy), CONTEXT))
    return key


def unseal(home: Home, passphrase: bytes, policy: Policy) -> bytes:
    """Unseal the master key (PassphraseError on a wrong passphrase), with no manifest
    check: commands unlock through `appliance.trust.unlock`, which opens the trust session."""
    blob = keystore.read_sealed(path_of(home), missing="the vault master key is missing",
                                hint="run appliance init")
    return keystore.unseal(blob, passphrase, kdf_caps(policy), CONTEXT)
