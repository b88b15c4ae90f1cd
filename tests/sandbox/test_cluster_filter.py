"""The sandbox of one cluster node: loopback and one macvlan interface onto the cluster
network, behind nftables rules set up before anything starts in it. From inside, a listed
peer on a listed port is reached, an outsider (a listener in another namespace on the same
wire, not a listed peer) is not, by any route, and every refused destination is counted
and audited. With the test-only weakening switch the outsider is reached: the test can
fail."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from appliance.home import Home
from appliance.sandbox import cluster
from appliance.service import cluster as service_cluster
from appliance.train import isolation
from tests.sandbox.clusternet import FAR, OUTSIDER, PEER, SANDBOX, far, listening

pytestmark = [pytest.mark.netns, pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None or shutil.which("ip") is None,
    reason="needs root, nft (nftables) and ip (iproute2)")]
PORT = 29500


def _probe(step: cluster.ClusterNetwork, host: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    result = isolation.run_isolated({"probe": "network", "host": host, "port": PORT},
                                    events.append, isolation.require_isolation(),
                                    spec=isolation.child_spec(network=step))
    assert result.returncode == 0, result.output_tail
    return [e for e in events if e["type"] == "probe"]


def _reach(home: Home) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[str],
                                 list[str], list[dict[str, object]]]:
    with far() as iface, listening(FAR, PEER, PORT) as at_peer, \
            listening(FAR, OUTSIDER, PORT) as at_outsider, \
            cluster.prepared(iface, SANDBOX, [SANDBOX, PEER], (PORT, PORT + 99)) as step:
        peer = _probe(step, PEER)
        outsider = _probe(step, OUTSIDER)
        drops = service_cluster.audit_drops(home, "probe-cluster", step)
    return peer, outsider, at_peer, at_outsider, drops


def test_only_listed_peers_are_reachable_and_refusals_are_audited(tmp_path: Path) -> None:
    """Every route reaches the listed peer; none reaches the outsider; the outsider's
    address:port is counted, and the audit log has the drop."""
    home = Home(tmp_path / "home")
    peer, outsider, at_peer, at_outsider, drops = _reach(home)
    assert peer and all(e["outcome"] == "connected" for e in peer), peer
    assert outsider and not any(e["outcome"] == "connected" for e in outsider), outsider
    assert at_outsider == [] and SANDBOX in at_peer
    assert {"target": f"{OUTSIDER}:{PORT}"} .items() <= next(
        d for d in drops if "target" in d).items()
    log = [json.loads(x) for x in home.audit_log.read_text().splitlines()]
    audited = [e for e in log if e["action"] == "network.cluster_drop"]
    # the audit log redacts addresses; the entry says the destination was not a listed peer
    assert any(e.get("listed_peer") is False and str(e.get("target")).endswith(f":{PORT}")
               and e["packets"] > 0 for e in audited), audited


def test_weakened_filter_lets_the_outsider_through(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The positive control: with the rules switched to accept (test-only switch), the
    outsider is reached, so the test above would fail."""
    monkeypatch.setenv(cluster.WEAKEN_ENV, "1")
    _, outsider, _, at_outsider, _ = _reach(Home(tmp_path / "home"))
    assert any(e["outcome"] == "connected" for e in outsider)
    assert SANDBOX in at_outsider
