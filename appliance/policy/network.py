"""Policy for network access."""

from __future__ import annotations

from typing import Literal

from appliance.policy._base import Section


class NetworkPolicy(Section):
    """Network access of the appliance's components."""

    training: Literal["deny"] = "deny"
    """The trainer runs in a new kernel network namespace with no interfaces but loopback."""
    when_isolation_unavailable: Literal["refuse"] = "refuse"
    """With no network namespace available, training is refused (and doctor says why)."""
    audit_socket_attempts: bool = True
    """Record every socket attempt inside the trainer as an audit event (a tripwire beside
    the namespace, which is what enforces)."""
