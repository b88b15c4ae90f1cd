"""The sandbox's pieces one by one: the seccomp filter against system calls made directly
(ctypes `syscall`, so no Python layer can be credited), the refusal to start when a secret
would be visible, and the doctor's report of the level in force."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import sandbox
from appliance.errors import IsolationError

pytestmark = pytest.mark.netns

# Each line: a name and a raw system call; prints name=errno (0 when it succeeded).
RAW = r"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
L = ctypes.c_long
calls = {
  "socket_packet": (41, L(17), L(2), L(0)),
  "socket_packet_high_bits": (41, L(17 | (1 << 32)), L(2), L(0)),
  "socket_vsock": (41, L(40), L(1), L(0)),
  "socket_netlink_audit": (41, L(16), L(3), L(9)),
  "unshare_user": (272, L(0x10000000)),
  "bpf": (321, L(0), L(0), L(0)),
  "keyctl": (250, L(0), L(0)),
  "io_uring_setup": (425, L(1), L(0)),
  "mount": (165, b"none", b"/tmp", b"tmpfs", L(0), L(0)),
}
out = {}
for name, args in calls.items():
    rc = libc.syscall(*args)
    out[name] = 0 if rc >= 0 else ctypes.get_errno()
out["socket_inet"] = 0 if libc.syscall(41, L(2), L(1), L(0)) >= 0 else ctypes.get_errno()
out["socket_unix"] = 0 if libc.syscall(41, L(1), L(1), L(0)) >= 0 else ctypes.get_errno()
print(json.dumps(out))
"""


def _raw(monkeypatch: pytest.MonkeyPatch, *, weaken: bool) -> dict[str, int]:
    if weaken:
        monkeypatch.setenv(sandbox.WEAKEN_ENV, "1")
    proc = sandbox.spawn([sys.executable, "-c", RAW], sandbox.Spec(),
                         env=sandbox.environment({}), stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=60)
    return dict(json.loads(out))


def test_seccomp_refuses_raw_system_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """Packet, vsock and netlink-audit sockets (also with high bits set in the family),
    unshare, bpf, keyctl, io_uring and mount fail; inet and unix sockets work."""
    got = _raw(monkeypatch, weaken=False)
    refused = {k: v for k, v in got.items() if not k.startswith(("socket_inet", "socket_unix"))}
    assert all(code != 0 for code in refused.values()), got
    assert got["socket_packet_high_bits"] != 0
    assert got["socket_inet"] == 0 and got["socket_unix"] == 0


def test_without_the_filter_the_same_calls_succeed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control: the weakened sandbox (no seccomp, root keeps its capabilities)
    opens a packet socket and makes a user namespace."""
    got = _raw(monkeypatch, weaken=True)
    assert got["unshare_user"] == 0
    if sandbox.os.geteuid() == 0:
        assert got["socket_packet"] == 0 and got["socket_packet_high_bits"] == 0


def test_refuses_to_start_when_a_secret_is_visible(tmp_path: Path) -> None:
    """A passphrase file inside a directory the sandbox would bind stops the spawn."""
    work = tmp_path / "work"
    work.mkdir()
    spec = sandbox.Spec(writable=(work,), secrets=(work / "pass",))
    with pytest.raises(IsolationError, match="secret would be visible"):
        sandbox.command(["true"], spec)
    sandbox.command(["true"], sandbox.Spec(writable=(work,), secrets=(tmp_path / "pass",)))


def test_doctor_reports_the_level_and_fails_without_it(run_cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """doctor --json has a required `sandbox` check; with the sandbox unavailable it fails
    (exit 1) saying the ML stack will refuse."""
    done = run_cli("doctor", "--json", "--home", str(tmp_path / "home"),
                   env={"APPLIANCE_FORCE_NO_NETNS": "1"})
    report = json.loads(done.stdout)
    check = next(c for c in report["checks"] if c["name"] == "sandbox")
    assert check["required"] and not check["ok"] and "will refuse" in check["detail"]
    assert done.returncode == 1
