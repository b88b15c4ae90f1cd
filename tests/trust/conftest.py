"""Fixtures for the trust-primitive tests: a cheap-KDF policy and an initialised home."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import trust
from appliance.home import Home

FAST_POLICY = Path(__file__).resolve().parent / "fast-policy.toml"
PASSPHRASE = b"correct horse battery staple"


@pytest.fixture
def fast_policy() -> Path:
    """A policy with Argon2id at 8 MiB / 1 pass / 1 lane and checkpoints every 4 entries."""
    return FAST_POLICY


@pytest.fixture
def passphrase() -> bytes:
    """The passphrase `initialised_home` is sealed under (same as the shared passphrase_file)."""
    return PASSPHRASE


@pytest.fixture
def initialised_home(tmp_path: Path) -> Iterator[Home]:
    """A complete home created by init under the fast policy; the process holds no key."""
    from appliance.service.home import init_home

    home = Home(tmp_path / "home")
    init_home(home, PASSPHRASE, FAST_POLICY)
    trust.forget(home)
    yield home
    trust.forget(home)
