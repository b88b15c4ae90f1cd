"""A cluster node's parent killed with SIGKILL mid-run leaves its network namespace (a
named namespace outlives its processes), with the macvlan and the nftables table in it;
the next run's sweep deletes it, and never touches the namespace of a run still alive."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from appliance.resources import REPO_ROOT
from appliance.sandbox import cluster
from tests.sandbox.clusternet import PEER, SANDBOX, far

pytestmark = [pytest.mark.netns, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft (nftables) and ip (iproute2)")]

HOLD = """
import sys, time
from appliance.sandbox import cluster
with cluster.prepared(sys.argv[1], sys.argv[2], [sys.argv[2], sys.argv[3]], (29500, 29599)) as s:
    print(s.netns, flush=True)
    time.sleep(600)
"""


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True,
                         check=True).stdout
    return {entry["name"] for entry in json.loads(out or "[]")}


def _table(netns: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", netns, "nft", "list", "table", "inet",
                           cluster.TABLE], capture_output=True, check=False)
    return done.returncode == 0


def test_a_killed_run_leaves_its_namespace_until_the_next_run_sweeps_it() -> None:
    """SIGKILL the process holding a prepared namespace: the namespace and its table stay
    (what the sweep is for); sweep() deletes it and its record, and leaves a live run's."""
    with far() as iface:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, iface, SANDBOX, PEER],
                                cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        name = proc.stdout.readline().strip()
        assert name.startswith("appliance-"), name
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert name in _namespaces() and _table(name)  # left behind by the kill
        with cluster.prepared(iface, SANDBOX, [SANDBOX, PEER], (29500, 29599)) as live:
            # the new run swept the dead one first; its own stays while it lives
            assert name not in _namespaces()
            assert not (cluster.STATE_DIR / f"{name}.lock").exists()
            assert cluster.sweep() == []
            assert live.netns in _namespaces() and _table(live.netns)
        assert live.netns not in _namespaces()
        assert not (cluster.STATE_DIR / f"{live.netns}.lock").exists()


def test_a_stray_record_naming_other_interfaces_deletes_nothing_of_theirs() -> None:
    """A record in the state directory that names a namespace and a link this module did
    not make (as a stray or planted file could: `eth0`) is cleared, and they stay."""
    try:
        subprocess.run(["ip", "netns", "add", "victim-ns"], check=True)
        subprocess.run(["ip", "link", "add", "victim0", "type", "veth", "peer", "name",
                        "victim1"], check=True)
        cluster.STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        record = cluster.STATE_DIR / "victim-ns.lock"
        record.write_text(json.dumps({"netns": "victim-ns", "link": "victim0", "pid": 1}))
        cluster.sweep()
        assert not record.exists()
        assert "victim-ns" in _namespaces()
        assert subprocess.run(["ip", "link", "show", "victim0"], capture_output=True,
                              check=False).returncode == 0
    finally:
        subprocess.run(["ip", "link", "del", "victim0"], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", "victim-ns"], capture_output=True, check=False)
