"""Training isolation with the real mechanisms: from inside the trainer child, connects to
a loopback listener the parent owns fail by every route (threads included) and are audited
as attempts; a real NF4 pass makes no network attempt; no sandbox means no training."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from appliance.home import Home
from appliance.offline import OFFLINE_ENV
from appliance.service.train import probe_isolation
from tests.train.conftest import write_recipe


def _audit(home: Home) -> list[dict[str, object]]:
    return [json.loads(line) for line in home.audit_log.read_text().splitlines()]


@pytest.mark.netns
def test_every_route_out_of_the_trainer_fails_and_is_audited(
        tmp_path: Path, listener: tuple[int, list[object]]) -> None:
    """socket, _socket, ctypes connect and a child process, each also from a thread: none
    reaches the parent's listener, and the attempts are in the audit log."""
    port, accepted = listener
    # Sanity: the listener is reachable from outside the namespace.
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    home = Home(tmp_path / "home")
    events = probe_isolation(home, "network", host="127.0.0.1", port=port)
    started = next(e for e in events if e["type"] == "started")
    assert started["interfaces"] == ["lo"]
    assert started["offline"] == OFFLINE_ENV
    probes = [e for e in events if e["type"] == "probe"]
    assert {(e["route"], e["thread"]) for e in probes} == {
        (r, t) for r in ("socket", "_socket", "ctypes", "child_process") for t in (False, True)}
    for event in probes:
        assert event["outcome"] != "connected", event
        # the sandbox's own loopback is up and nothing listens there: the host's is unseen
        assert any(word in event["outcome"] for word in
                   ("ECONNREFUSED", "refused", "ENETUNREACH", "unreachable")), event
    assert len(accepted) == 1  # only the sanity connection above
    log = _audit(home)
    blocked = [e for e in log if e["action"] == "network.attempt"]
    # The audit chain redacts IP addresses (identifiers) in every value; the port stays.
    target = f"[REDACTED:IP_ADDRESS]:{port}"
    assert "127.0.0.1" not in home.audit_log.read_text()
    connects = [e for e in blocked if e["via"] == "socket.connect" and e["target"] == target]
    assert {e["thread"] for e in connects} == {"MainThread", "probe-socket", "probe-_socket"}
    ctypes_hits = {(e["target"], e["thread"]) for e in blocked if e["via"] == "ctypes.dlsym"}
    assert {("connect", "MainThread"), ("connect", "probe-ctypes")} <= ctypes_hits
    spawns = [e for e in log if e["action"] == "trainer.process_spawn"]
    assert {e["thread"] for e in spawns} == {"MainThread", "probe-child_process"}
    assert {e["outcome"] for e in log} == {"attempted"}  # never "blocked"


@pytest.mark.netns
def test_nf4_forward_pass_reaches_for_no_network(tmp_path: Path,
                                                 converted_model: Path) -> None:
    """bitsandbytes on CPU looks for an optional `kernels` package from a hub: a real NF4
    forward and backward pass of the base model triggers no socket attempt at all."""
    home = Home(tmp_path / "home")
    events = probe_isolation(home, "nf4", model_dir=str(converted_model / "weights"))
    probe = next(e for e in events if e["type"] == "probe")
    assert probe["outcome"].startswith("ok") and "Linear4bit" in probe["outcome"]
    assert [e for e in events if e["type"] == "tripwire"] == []
    assert not home.audit_log.exists()


@pytest.mark.netns
def test_refuses_to_train_without_a_namespace(train_home: Home, pass_file: Path,
                                              tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """With namespaces unavailable the CLI refuses (exit 1) saying why; no run starts."""
    recipe = write_recipe(tmp_path / "r.toml")
    done = run_cli("train", str(recipe), "--home", str(train_home.root),
                   "--passphrase-file", str(pass_file),
                   env={"APPLIANCE_FORCE_NO_NETNS": "1"})
    assert done.returncode == 1
    assert "no sandbox can be created" in done.stderr
    assert "Traceback" not in done.stderr
    assert not train_home.runs_dir.exists() or not any(train_home.runs_dir.iterdir())
