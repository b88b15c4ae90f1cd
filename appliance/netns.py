"""Kernel network namespaces: the isolation the trainer runs in.

A child started through `isolated_argv` runs in a new network namespace that has only a
loopback interface (down): no route to anything outside the process tree, whatever the
code inside does (socket, _socket, ctypes, child processes, threads). As root, `unshare
--net`; otherwise a user namespace maps the caller to root first (`--user --map-root-user`).
"""

from __future__ import annotations

import functools
import os
import shutil
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
