"""Bare kernel network namespaces (`unshare --net`), and the loopback of a namespace.

The ML stack runs in appliance.sandbox (bubblewrap), not here. What remains: the probe
that the interfaces inside a namespace are only `lo` (PROBE, shared with the sandbox's own
probe), `loopback_up` for a multi-process run, and `isolated_argv`, the bare network
namespace of old that only the test-only weakened sandbox and a scrub test still use.
"""

from __future__ import annotations

import functools
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass

PROBE = ("import socket,json;"
         "print(json.dumps([n for _, n in socket.if_nameindex()]))")


@dataclass(frozen=True)
class NamespaceSupport:
    """Whether a network namespace can be created here, how, and why not."""

    available: bool
    prefix: tuple[str, ...]
    detail: str


def _candidates() -> list[tuple[str, ...]]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    rootless = (unshare, "--user", "--map-root-user", "--net", "--")
    rooted = (unshare, "--net", "--")
    return [rooted, rootless] if os.geteuid() == 0 else [rootless, rooted]


@functools.lru_cache(maxsize=1)
def probe() -> NamespaceSupport:
    """Try each way of creating a network namespace and check that only loopback exists."""
    candidates = _candidates()
    if not candidates:
        return NamespaceSupport(False, (), "the unshare command (util-linux) is not installed")
    reasons = []
    for prefix in candidates:
        try:
            done = subprocess.run([*prefix, sys.executable, "-c", PROBE], capture_output=True,
                                  text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            reasons.append(f"{' '.join(prefix[1:-1])}: {exc}")
            continue
        if done.returncode == 0 and done.stdout.strip() == '["lo"]':
            how = " ".join(prefix[1:-1])
            return NamespaceSupport(True, prefix, f"unshare {how}: only loopback inside")
        err = (done.stderr.strip().splitlines() or ["unexpected interfaces: " + done.stdout])[-1]
        reasons.append(f"unshare {' '.join(prefix[1:-1])}: {err}")
    return NamespaceSupport(False, (), "; ".join(reasons) + " (unprivileged user namespaces "
                            "may be disabled: sysctl kernel.unprivileged_userns_clone)")


def isolated_argv(argv: list[str]) -> list[str] | None:
    """`argv` wrapped to run in a new network namespace, or None when none can be created."""
    support = probe()
    return [*support.prefix, *argv] if support.available else None


SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sH22x"  # struct ifreq: interface name, then ifr_flags in the 24-byte union


def loopback_up() -> None:
    """Bring up the loopback interface of the namespace this process is in (what `ip link
    set lo up` does), for a multi-process run's rendezvous. Only inside an isolated
    namespace: refused (IsolationError) when any interface but `lo` exists. The ioctl goes
    through an AF_UNIX socket, so no inet socket is ever created for it."""
    import fcntl
    import socket

    from appliance.errors import IsolationError

    names = [name for _, name in socket.if_nameindex()]
    if names != ["lo"]:
        raise IsolationError(f"not inside an isolated network namespace (interfaces: "
                             f"{', '.join(names)})", where="multi-process training")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            raw = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack(IFREQ, b"lo", 0))
            flags = struct.unpack(IFREQ, raw)[1]
            if flags & IFF_UP:  # the sandbox (bubblewrap) brings it up itself
                return
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))
    except OSError as exc:
        raise IsolationError(f"cannot bring up the namespace's loopback: {exc.strerror}",
                             where="multi-process training",
                             hint="the namespace needs CAP_NET_ADMIN inside it (unshare "
                                  "--user --map-root-user gives it)") from None
