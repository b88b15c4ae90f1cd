"""The sandbox's network set-up, one replaceable step.

A step adds bubblewrap options (`bwrap_args`) and may wrap the whole bubblewrap command
(`outer`), for a step that prepares a namespace first. `LOOPBACK_ONLY`, the default, is
bubblewrap's `--unshare-net`: a new network namespace whose only interface is its own
loopback (up, so a multi-process run can meet on it; it is not the host's loopback). A
later step (a cluster interface with nftables rules, say) implements the same protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class NetworkStep(Protocol):
    """How the sandbox's network namespace is made."""

    def bwrap_args(self) -> list[str]:
        """bubblewrap options for the namespace."""
        ...

    def outer(self, argv: list[str]) -> list[str]:
        """The bubblewrap command line, wrapped by whatever prepares the namespace."""
        ...

    def describe(self) -> str:
        """One line for the doctor, the audit log and provenance."""
        ...


@dataclass(frozen=True)
class LoopbackOnly:
    """A new network namespace with nothing but its own loopback."""

    def bwrap_args(self) -> list[str]:
        """bubblewrap's own network namespace (it brings its loopback up)."""
        return ["--unshare-net"]

    def outer(self, argv: list[str]) -> list[str]:
        """Nothing to prepare."""
        return argv

    def describe(self) -> str:
        """One line."""
        return "network namespace with loopback only"


LOOPBACK_ONLY = LoopbackOnly()
