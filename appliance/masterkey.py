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


def load(home: Home, passphrase: bytes, policy: Policy, *,
         allow_policy_change: bool = False) -> bytes:
    """Unseal the master key (PassphraseError on a wrong passphrase) and open the process's
    trust session: the home manifest's MAC and everything it binds are checked (refused,
    naming what changed), and a checkpoint is signed at exit (`appliance.trust`)."""
    from appliance import trust

    key = unseal(home, passphrase, policy)
    trust.open_session(home, key, passphrase, policy, allow_policy_change=allow_policy_change)
    return key


def unseal(home: Home, passphrase: bytes, policy: Policy) -> bytes:
    """Only unseal the master key (no manifest check): init and the trust module."""
    blob = keystore.read_sealed(path_of(home), missing="the vault master key is missing",
                                hint="run appliance init")
    return keystore.unseal(blob, passphrase, kdf_caps(policy), CONTEXT)


def change_passphrase(home: Home, old: bytes, new: bytes, policy: Policy) -> None:
    """Re-seal the master key and both private keys under a new passphrase (the keys
    themselves are unchanged, so every signature, MAC and dataset stays valid). All three
    are re-sealed in memory before the first is written."""
    from appliance import keys

    targets = [(path_of(home), CONTEXT),
               (home.keys_dir / keys.SIGNING_SEALED, keys.SIGNING_CONTEXT),
               (home.keys_dir / keys.CHECKPOINT_SEALED, keys.CHECKPOINT_CONTEXT)]
    sealed = [(path, keystore.reseal(keystore.read_sealed(path, missing="a sealed key is missing",
                                                          hint="run appliance init"),
                                     old, new, kdf_params(policy), kdf_caps(policy), context))
              for path, context in targets if path.exists()]
    for path, blob in sealed:
        atomic_write_bytes(path, blob)
