"""Shared fixtures. Unit tests run with outbound sockets disabled (AF_INET/AF_INET6 connects
raise) so that no test can silently depend on the network; loopback listeners still work."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Files the tests write (passphrase files above all) are private to their owner, as an
# operator's must be: the appliance refuses a passphrase file others can read.
os.umask(0o077)


class NetworkDisabledInTestsError(RuntimeError):
    """A test tried to connect to the network."""


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse non-loopback connects unless a test is marked `network_ok`."""
    if request.node.get_closest_marker("network_ok"):
        return
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else str(address)
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise NetworkDisabledInTestsError(f"test tried to connect to {address!r}")
        real_connect(self, address)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture
def repo() -> Path:
    """The repository root."""
    return REPO


@pytest.fixture
def run_cli(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Run `python -m appliance ARGS` in a child process; returns CompletedProcess."""
    import subprocess

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                              text=True, env=full_env, input=input, timeout=timeout,
                              check=False)

    return run


@pytest.fixture
def passphrase_file(tmp_path: Path) -> Iterator[Path]:
    """A passphrase file for tests."""
    path = tmp_path / "passphrase"
    path.write_text("correct horse battery staple\n")
    yield path
