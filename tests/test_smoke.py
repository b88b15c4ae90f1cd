"""Smoke tests of the command line."""

import socket

import pytest


def test_version_is_fast_and_imports_nothing_heavy(run_cli):
    """`appliance --version` prints the version."""
    done = run_cli("--version")
    assert done.returncode == 0
    assert done.stdout.startswith("appliance ")


def test_network_is_disabled_in_tests():
    """The autouse guard refuses outbound connects."""
    with pytest.raises(RuntimeError), socket.socket() as s:
        s.connect(("192.0.2.1", 80))
