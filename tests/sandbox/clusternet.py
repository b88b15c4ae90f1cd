"""A cluster network of the test's own: kernel network namespaces and veth pairs, with
addresses in 10.231.0.0/16, removed afterwards.

`far()` makes one veth pair: `t231h` here (10.231.7.1/24) and its end in namespace
`t231-far`, which holds a listed peer's address (10.231.7.12) and an outsider's
(10.231.7.3). `nodes()` makes a bridge namespace and one namespace per node, each with
its cluster interface `t231c` (10.231.8.N/24) on the bridge, and an outsider namespace
(10.231.8.3).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator

PEER, OUTSIDER, HOST = "10.231.7.12", "10.231.7.3", "10.231.7.1"
SANDBOX = "10.231.7.11"
FAR = "t231-far"


def sh(*argv: str, check: bool = True) -> None:
    """One `ip` command."""
    subprocess.run(["ip", *argv], check=check, capture_output=True, timeout=30)


@contextlib.contextmanager
def far() -> Iterator[str]:
    """The host end's interface name, with the far namespace behind it."""
    sh("netns", "del", FAR, check=False)
    sh("link", "del", "t231h", check=False)
    sh("netns", "add", FAR)
    try:
        sh("link", "add", "t231h", "type", "veth", "peer", "name", "t231f")
        sh("link", "set", "t231f", "netns", FAR)
        sh("addr", "add", f"{HOST}/24", "dev", "t231h")
        sh("link", "set", "t231h", "up")
        for address in (PEER, OUTSIDER):
            sh("-n", FAR, "addr", "add", f"{address}/24", "dev", "t231f")
        sh("-n", FAR, "link", "set", "t231f", "up")
        sh("-n", FAR, "link", "set", "lo", "up")
        yield "t231h"
    finally:
        sh("link", "del", "t231h", check=False)
        sh("netns", "del", FAR, check=False)


SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16); print("ready", flush=True)
while True:
    c, peer = s.accept(); print(peer[0], flush=True); c.close()
"""


@contextlib.contextmanager
def listening(netns: str, address: str, port: int) -> Iterator[list[str]]:
    """A TCP listener in `netns` on address:port (a process there); the list fills with the
    addresses it accepted."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", SERVER,
                             address, str(port)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    accepted: list[str] = []

    def collect() -> None:
        assert proc.stdout is not None
        accepted.extend(line.strip() for line in proc.stdout)

    thread = threading.Thread(target=collect, daemon=True)
    thread.start()
    try:
        yield accepted
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        thread.join(timeout=5)


NODE_NS = ("t231-n0", "t231-n1")
NODE_IFACE = "t231c"
SWITCH = "t231-sw"
NODE_HOSTS = ("10.231.8.1", "10.231.8.2")
NODE_SANDBOXES = ("10.231.8.11", "10.231.8.12")
NODE_OUTSIDER = "10.231.8.3"
OUT_NS = "t231-out"


@contextlib.contextmanager
def nodes() -> Iterator[tuple[str, ...]]:
    """Two node namespaces and an outsider's on one bridge (in a switch namespace); each
    node's cluster interface is `t231c`."""
    every = (SWITCH, *NODE_NS, OUT_NS)
    for name in every:
        sh("netns", "del", name, check=False)
    try:
        for name in every:
            sh("netns", "add", name)
        sh("-n", SWITCH, "link", "add", "br0", "type", "bridge")
        sh("-n", SWITCH, "link", "set", "br0", "up")
        ends = [(ns, addr) for ns, addr in zip(NODE_NS, NODE_HOSTS, strict=True)]
        for i, (ns, addr) in enumerate([*ends, (OUT_NS, NODE_OUTSIDER)]):
            sh("-n", SWITCH, "link", "add", f"p{i}", "type", "veth", "peer", "name",
               NODE_IFACE, "netns", ns)
            sh("-n", SWITCH, "link", "set", f"p{i}", "master", "br0", "up")
            sh("-n", ns, "addr", "add", f"{addr}/24", "dev", NODE_IFACE)
            sh("-n", ns, "link", "set", NODE_IFACE, "up")
            sh("-n", ns, "link", "set", "lo", "up")
        yield NODE_NS
    finally:
        for name in every:
            sh("netns", "del", name, check=False)
