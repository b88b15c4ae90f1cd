"""Policy for network access."""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from appliance.policy._base import Section


class ClusterPolicy(Section):
    """The cluster network a multi-machine run may use: its nodes and ports, nothing else."""

    nodes: list[str] = Field(default_factory=list, max_length=64)
    """IPv4 addresses of the nodes' sandboxes on the cluster network, in node-rank order
    (node R's sandbox takes nodes[R]; the rendezvous is on nodes[0]). These are the only
    peers the sandbox's packet filter admits. Empty: no multi-machine training."""
    ports: list[int] = Field(default_factory=lambda: [29500, 29599], min_length=2,
                             max_length=2)
    """Lowest and highest TCP port admitted between nodes: the rendezvous port and the
    collectives' own listeners (the sandbox's ephemeral port range is set to it)."""

    @field_validator("nodes")
    @classmethod
    def _ipv4(cls, nodes: list[str]) -> list[str]:
        for node in nodes:
            ipaddress.IPv4Address(node)
        if len(set(nodes)) != len(nodes):
            raise ValueError("node addresses repeat")
        return nodes

    @model_validator(mode="after")
    def _range(self) -> ClusterPolicy:
        low, high = self.ports
        if not 1024 <= low <= high <= 65535:
            raise ValueError("ports must be [low, high] with 1024 <= low <= high <= 65535")
        return self


class NetworkPolicy(Section):
    """Network access of the appliance's components."""

    training: Literal["deny"] = "deny"
    """The trainer runs in a new kernel network namespace with no interfaces but loopback."""
    when_isolation_unavailable: Literal["refuse"] = "refuse"
    """With no network namespace available, training is refused (and doctor says why)."""
    audit_socket_attempts: bool = True
    """Record every socket attempt inside the trainer as an audit event (a tripwire beside
    the namespace, which is what enforces)."""
    cluster: ClusterPolicy = Field(default_factory=ClusterPolicy)
    """The one network a multi-machine run may reach (docs/scale-out.md)."""
