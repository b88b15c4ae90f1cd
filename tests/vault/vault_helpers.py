"""Helpers for vault tests: an initialised home with a cheap-KDF test policy.

`appliance init` belongs to another component; this builds the same layout directly: the
directories, the active policy, a sealed vault master key and the marker written last.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from appliance import trust
from appliance.home import Home
from appliance.policy import Policy, load_policy
from appliance.resources import shipped_policy

PASSPHRASE = b"correct horse battery staple"
CHEAP_KDF = (("memory_kib = 262144", "memory_kib = 8192"),
             ("iterations = 3", "iterations = 1"),
             ("lanes = 4", "lanes = 1"))


@dataclass
class VaultHome:
    """An initialised home and what tests need to use it."""

    home: Home
    policy: Policy
    master_key: bytes
    passphrase: bytes
    passphrase_file: Path

    def cli_env(self) -> dict[str, str]:
        """Environment for `run_cli` that points at this home."""
        return {"APPLIANCE_HOME": str(self.home.root),
                "APPLIANCE_PASSPHRASE_FILE": str(self.passphrase_file)}


def cheap_policy_text(*, export: str = "never") -> str:
    """The shipped default policy with a cheap Argon2id and the given export setting."""
    text = shipped_policy("default").read_text()
    for old, new in CHEAP_KDF:
        assert old in text, old
        text = text.replace(old, new, 1)
    old = 'datasets = "never"'
    assert old in text
    return text.replace(old, f'datasets = "{export}"', 1)


def make_home(root: Path, *, export: str = "never") -> VaultHome:
    """Create an initialised home under `root`."""
    from appliance.service.home import init_home

    home = Home(root)
    source = root.parent / f".{root.name}-policy.toml"
    source.write_text(cheap_policy_text(export=export))
    init_home(home, PASSPHRASE, source)  # a real home: keys, manifest, signed audit log
    policy = load_policy(home.policy_file)
    pw = root.parent / f"{root.name}.passphrase"
    pw.write_bytes(PASSPHRASE + b"\n")
    return VaultHome(home, policy, trust.unlock(home, PASSPHRASE, policy), PASSPHRASE, pw)


def copy_home(src: VaultHome, dst: Path) -> VaultHome:
    """A copy of a home (for tests that damage files)."""
    shutil.copytree(src.home.root, dst)
    pw = dst.parent / f"{dst.name}.passphrase"
    shutil.copy(src.passphrase_file, pw)
    return VaultHome(Home(dst), src.policy, src.master_key, src.passphrase, pw)
