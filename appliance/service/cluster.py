"""One training run over several machines: this node's part, seen from its parent.

Each node runs `appliance train` on its own home (its own vault, keys and audit log). This
module gives the run its network step (appliance.sandbox.cluster for several nodes, the
loopback-only default for one), what the job tells the launcher about the cluster, the
fingerprint every rank compares before the first step (appliance.train.distributed.agree),
this node's description for the provenance (host key fingerprint, hardware), and the audit
of what the packet filter dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypedDict

from appliance import audit
from appliance.errors import UsageError
from appliance.policy import Policy
from appliance.sandbox import cluster
from appliance.sandbox.network import LOOPBACK_ONLY, NetworkStep
from appliance.train.recipe import Recipe, shared_part

if TYPE_CHECKING:
    from appliance.home import Home
    from appliance.train.events import NodeFacts


def fingerprint(recipe: Recipe, base_model: str, dataset_digest: str,
                policy_digest: str) -> dict[str, str]:
    """What must be the same on every node (node-specific recipe keys left out)."""
    shared = json.dumps(shared_part(recipe), sort_keys=True).encode("utf-8")
    return {"dataset": dataset_digest, "base model": base_model,
            "recipe": "sha256:" + hashlib.sha256(shared).hexdigest(),
            "policy": policy_digest}


def node(home: Home, recipe: Recipe) -> NodeFacts:
    """This node in the provenance: its rank, host key (signing key) fingerprint and
    hardware."""
    from appliance import keys
    from appliance.train.artifact import hardware

    return {"node_rank": recipe.cluster.node_rank,
            "host_key": keys.fingerprints(home).signing, "hardware": hardware()}


@contextlib.contextmanager
def network(policy: Policy, recipe: Recipe) -> Iterator[tuple[NetworkStep,
                                                              dict[str, Any] | None]]:
    """The run's network step and the job's `cluster` entry (None on one machine)."""
    settings = recipe.cluster
    if settings.nnodes == 1:
        yield LOOPBACK_ONLY, None
        return
    if settings.missing():
        raise UsageError(f"a run over {settings.nnodes} machines needs "
                         f"{' and '.join(settings.missing())} (or the recipe's [cluster] keys)",
                         where="appliance train")
    allowed = policy.network.cluster
    peers = allowed.nodes[:settings.nnodes]
    address = peers[settings.node_rank]
    low, high = allowed.ports
    with cluster.prepared(settings.interface, address, peers, (low, high)) as step:
        yield step, {"nnodes": settings.nnodes, "node_rank": settings.node_rank,
                     "rendezvous": settings.rendezvous, "interface": settings.interface,
                     "address": address}


class ClusterPolicy(TypedDict):
    """The cluster policy in force as the provenance records it (no address)."""

    sha256: str
    nodes: int
    ports: list[int]
    max_nodes: int


def policy_section(policy: Policy) -> ClusterPolicy:
    """The cluster policy in force, for the provenance: its digest, node count and ports
    (provenance holds digests, counts and settings, never addresses)."""
    section = policy.network.cluster.model_dump()
    canonical = json.dumps(section, sort_keys=True).encode("utf-8")
    return {"sha256": "sha256:" + hashlib.sha256(canonical).hexdigest(),
            "nodes": len(section["nodes"]), "ports": section["ports"],
            "max_nodes": policy.training.limits.max_nodes}


def audit_drops(home: Home, run_id: str, step: NetworkStep) -> list[dict[str, object]]:
    """One `network.cluster_drop` audit event per refused destination (whether it is a
    listed peer: the audit log redacts the address itself) and per non-zero counter;
    returns them."""
    if not isinstance(step, cluster.ClusterNetwork):
        return []
    found = cluster.drops(step)
    for entry in found:
        if "target" in entry:
            entry["listed_peer"] = str(entry["target"]).rsplit(":", 1)[0] in step.peers
        audit.record(home, "network.cluster_drop", outcome="denied", run_id=run_id,
                     **{k: v for k, v in entry.items()})
    return found


def recipe_for_provenance(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe as provenance records it: the rendezvous as node 0 and its port (the
    provenance holds settings, never addresses)."""
    settings = dict(recipe.get("cluster") or {})
    if settings.get("rendezvous"):
        settings["rendezvous"] = "node0:" + str(settings["rendezvous"]).rsplit(":", 1)[-1]
    return {**recipe, "cluster": settings} if settings else recipe
