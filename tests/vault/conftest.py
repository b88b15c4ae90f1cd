"""Fixtures for vault tests: an initialised home (see vault_helpers.make_home)."""

from __future__ import annotations

from pathlib import Path

import pytest
from vault_helpers import VaultHome, make_home


@pytest.fixture
def vhome(tmp_path: Path) -> VaultHome:
    """An initialised home; dataset export forbidden (the default)."""
    return make_home(tmp_path / "home")


@pytest.fixture
def vhome_export(tmp_path: Path) -> VaultHome:
    """An initialised home whose policy allows encrypted dataset export."""
    return make_home(tmp_path / "home-export", export="encrypted")


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> VaultHome:
    """One home shared by a module's read-only tests."""
    return make_home(tmp_path_factory.mktemp("vault") / "home")
