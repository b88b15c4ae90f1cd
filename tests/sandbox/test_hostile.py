"""Hostile code in the real sandbox: a payload started through the trainer's own entry
point (`appliance.train.child`, probe job `escape`) tries every escape of the threat model
against host-side targets. In the sandbox each fails and is audited as an attempt; with the
sandbox weakened by the test-only switch, the same payload gets out, so these assertions
can fail."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.home import Home
from appliance.passphrase import PASSPHRASE_FILE_ENV
from appliance.sandbox import WEAKEN_ENV
from appliance.sandbox.escapes import ATTEMPTS
from appliance.service.train import probe_isolation
from tests.sandbox.conftest import Targets

pytestmark = pytest.mark.netns


def _payload(tmp_path: Path, targets: Targets, monkeypatch: pytest.MonkeyPatch,
             *, weaken: bool) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Run the payload; its escape reports by attempt, and the audit log."""
    monkeypatch.setenv(PASSPHRASE_FILE_ENV, str(targets.passphrase_file))
    if weaken:
        monkeypatch.setenv(WEAKEN_ENV, "1")
    targets.outside.parent.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    home = Home(tmp_path / "home")
    events = probe_isolation(home, "escape", host="127.0.0.1", port=targets.port,
                             unix_path=str(targets.unix_path), abstract=targets.abstract,
                             passphrase_file=str(targets.passphrase_file),
                             outside=str(targets.outside), parent_pid=os.getpid(),
                             writable=[str(work)])
    escapes = {e["attempt"]: e for e in events if e["type"] == "escape"}
    log = [json.loads(line) for line in home.audit_log.read_text().splitlines()]
    return escapes, log


def test_every_escape_fails_inside_the_sandbox(tmp_path: Path, targets: Targets,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """setns/nsenter into the parent's network, TCP to the host's loopback, filesystem and
    abstract UNIX sockets, the passphrase file, writes outside, capabilities, ptrace: none
    gets through, and nothing reaches any host listener or file."""
    escapes, _ = _payload(tmp_path, targets, monkeypatch, weaken=False)
    assert set(escapes) == set(ATTEMPTS)
    got_out = {name: e["detail"] for name, e in escapes.items() if e["escaped"]}
    assert got_out == {}
    assert targets.reached() == []
    assert not targets.outside.exists()
    assert "does not exist here" in escapes["read_passphrase"]["detail"]
    assert "EPERM" in escapes["ptrace_parent"]["detail"]
    assert "CapEff 0000000000000000" in escapes["raise_capabilities"]["detail"]


def test_every_attempt_is_audited_as_an_attempt(tmp_path: Path, targets: Targets,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The tripwire reports setns, unshare, nsenter, ptrace, both UNIX connects and the
    write outside the work area (into the virtualenv: a path under /tmp is the sandbox's
    own tmpfs); every entry says `attempted`, none `blocked`."""
    _, log = _payload(tmp_path, targets, monkeypatch, weaken=False)
    tried = [e for e in log if e.get("run_id") == "probe-escape"]
    assert {e["outcome"] for e in tried} == {"attempted"}
    seen = {(e["action"], e.get("target", "")) for e in tried}
    assert {("namespace.attempt", "setns"), ("namespace.attempt", "unshare"),
            ("namespace.attempt", "nsenter"), ("ptrace.attempt", "ptrace"),
            ("unix.connect_attempt", str(targets.unix_path)),
            ("file.write_attempt", str(Path(sys.prefix) / "escape.txt"))} <= seen
    abstract = [t for a, t in seen if a == "unix.connect_attempt" and targets.abstract in t]
    assert abstract
    assert any(a == "network.attempt" and t.endswith(f":{targets.port}") for a, t in seen)


def test_the_weakened_sandbox_lets_the_payload_out(tmp_path: Path, targets: Targets,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Positive control: with APPLIANCE_TEST_WEAKEN_SANDBOX=1 (today's bare network
    namespace) the payload reads the passphrase, writes outside, reaches the host's UNIX
    socket and, as root, setns()es back into the host's network: the assertions above
    would fail."""
    escapes, _ = _payload(tmp_path, targets, monkeypatch, weaken=True)
    got_out = {name for name, e in escapes.items() if e["escaped"]}
    assert {"read_passphrase", "write_outside", "unix_filesystem"} <= got_out
    assert targets.outside.exists()
    assert targets.reached()
    if os.geteuid() == 0:
        assert {"setns_parent_net", "nsenter_parent_net", "ptrace_parent"} <= got_out
