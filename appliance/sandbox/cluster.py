"""The network step of one node of a cluster run: loopback plus one filtered interface.

The parent (root on the host) prepares the namespace before bubblewrap starts, and
bubblewrap then runs inside it without `--unshare-net` (user, mount, PID, IPC namespaces,
`--cap-drop ALL`, no_new_privs and seccomp stay as for every sandbox):

1. `ip netns add` a namespace for the run;
2. a macvlan interface on the host's cluster interface (bridge mode: its own MAC on the
   same wire; the host's interface keeps its address and its traffic), moved into the
   namespace, renamed to the cluster interface's name, given this node's cluster address
   (`[network.cluster] nodes`, by node rank) and brought up with `lo`;
3. `nft -f` loads one table into the namespace: input and output chains that drop by
   default, admit loopback, established flows and TCP between this node and the listed
   peer addresses on the listed ports only; every other packet is counted and its
   destination (address . port) is remembered in a counting set;
4. the namespace's ephemeral port range is set to the listed ports, so gloo's and NCCL's
   own listeners land where the filter admits them.

The namespace belongs to the host's initial user namespace; the sandboxed processes live
in a user namespace of their own, with no capability at all, so they can change neither
the rules nor the interface. After the run the parent reads the counters (`drops()`) for
the audit log and deletes the namespace (the macvlan goes with it).

A named namespace outlives its processes (`ip netns add` pins it with a bind mount under
/run/netns), so a parent killed with SIGKILL would leave it, its macvlan and its table
behind. Each run therefore holds an flock on a record of what it made (STATE_DIR, root's
tmpfs), taken before anything is made; the kernel releases the lock when the process dies,
however it dies. Every run first sweeps (`sweep()`): a record whose lock can be taken
belongs to a dead run, and what it names is deleted.

`APPLIANCE_TEST_WEAKEN_CLUSTER_FILTER=1` is a test-only switch, read here alone and not a
product option: the chains then accept everything, so the filter test can show it fails.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.errors import IsolationError, UsageError

WEAKEN_ENV = "APPLIANCE_TEST_WEAKEN_CLUSTER_FILTER"
TABLE = "appliance"
STATE_DIR = Path("/run/appliance/cluster")
_OURS_NETNS = re.compile(r"appliance-[0-9a-f]{8}")
_OURS_LINK = re.compile(r"apl[0-9a-f]{8}")
"""One `NAMESPACE.lock` per live run (what it made, as JSON; flock held while it runs)."""


@dataclass(frozen=True)
class ClusterNetwork:
    """A prepared namespace: bubblewrap runs in it (`outer`) and keeps it (no bwrap
    option)."""

    netns: str
    interface: str
    address: str
    peers: tuple[str, ...]
    ports: tuple[int, int]

    def bwrap_args(self) -> list[str]:
        """No new network namespace: the prepared one is the sandbox's."""
        return []

    def outer(self, argv: list[str]) -> list[str]:
        """bubblewrap started inside the prepared namespace."""
        return [_tool("ip"), "netns", "exec", self.netns, *argv]

    def describe(self) -> str:
        """One line."""
        return (f"network namespace with loopback and {self.interface} ({self.address}); "
                f"nftables admits only {', '.join(self.peers)} on TCP ports "
                f"{self.ports[0]}-{self.ports[1]}")


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        package = "nftables" if name == "nft" else "iproute2"
        raise IsolationError(f"{name} is not installed", where="cluster network",
                             hint=f"apt-get install {package}")
    return found


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                          check=False, timeout=30)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["failed"])[-1][:300]
        raise IsolationError(f"cannot prepare the cluster network: {' '.join(argv[:4])}: "
                             f"{why}", where="cluster network",
                             hint="it needs root on the host (CAP_NET_ADMIN)")
    return done.stdout


def prefix_on(interface: str, address: str) -> int:
    """The prefix length of the host's network on `interface` that holds `address`."""
    out = _run([_tool("ip"), "-j", "addr", "show", "dev", interface])
    for link in json.loads(out or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") != "inet":
                continue
            net = ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if ipaddress.ip_address(address) in net:
                return int(info["prefixlen"])
    raise UsageError(f"the cluster interface {interface} has no IPv4 network holding this "
                     f"node's address {address}", where="--cluster-interface",
                     hint="give the interface onto the cluster network, or fix "
                          "[network.cluster] nodes in the policy")


def ruleset(address: str, peers: Sequence[str], ports: tuple[int, int]) -> str:
    """The nftables table of the namespace (`nft -f -` input)."""
    verdict = "accept" if os.environ.get(WEAKEN_ENV) == "1" else "drop"
    # what leaves is refused at once (the sender learns at once, no 2-minute SYN retries)
    out_verdict = "accept" if verdict == "accept" else "reject with icmpx type admin-prohibited"
    allowed = ", ".join(peers)
    span = f"{ports[0]}-{ports[1]}"
    return f"""table inet {TABLE} {{
  set dropped {{ type ipv4_addr . inet_service; flags dynamic; counter; size 4096; }}
  counter refused_out {{ }}
  counter refused_in {{ }}
  chain output {{
    type filter hook output priority filter; policy {verdict};
    oif "lo" accept
    ct state established,related accept
    ip saddr {address} ip daddr {{ {allowed} }} tcp dport {span} accept
    meta l4proto {{ tcp, udp }} update @dropped {{ ip daddr . th dport }}
    counter name refused_out {out_verdict}
  }}
  chain input {{
    type filter hook input priority filter; policy {verdict};
    iif "lo" accept
    ct state established,related accept
    ip saddr {{ {allowed} }} ip daddr {address} tcp dport {span} accept
    counter name refused_in {verdict}
  }}
}}
"""


def _claim(name: str, link: str) -> int:
    """A locked record of the namespace and link this run makes (before it makes them):
    written under a temporary name, locked, then renamed, so a sweep never sees it
    unlocked while its maker lives. Returns the descriptor that holds the lock."""
    staging = STATE_DIR / f".{name}.new"
    try:
        STATE_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise IsolationError(f"cannot prepare the cluster network: {STATE_DIR}: "
                             f"{exc.strerror or exc}", where="cluster network",
                             hint="it needs root on the host (CAP_NET_ADMIN)") from None
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, json.dumps({"netns": name, "link": link, "pid": os.getpid()}).encode())
    os.rename(staging, STATE_DIR / f"{name}.lock")
    return fd


def sweep() -> list[str]:
    """Delete what runs that died without cleaning up made (their namespace, with the
    macvlan and nftables table in it, or a macvlan not yet moved into it): every record
    whose lock can be taken. Returns the namespaces deleted; live runs are left alone."""
    if not STATE_DIR.is_dir():
        return []
    ip = _tool("ip")
    gone = []
    for record in sorted(STATE_DIR.glob("*.lock")):
        try:
            fd = os.open(record, os.O_RDWR | os.O_CLOEXEC)
        except OSError:  # its run ended meanwhile (or not ours to read)
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live run holds it
                continue
            try:
                made = json.loads(record.read_text("utf-8") or "{}")
            except ValueError:
                made = {}
            name = str(made.get("netns") or record.name.removesuffix(".lock"))
            link = str(made.get("link") or "")
            # only names this module makes: a stray record cannot delete eth0
            for argv in ([ip, "netns", "del", name if _OURS_NETNS.fullmatch(name) else ""],
                         [ip, "link", "del", link if _OURS_LINK.fullmatch(link) else ""]):
                if argv[-1]:
                    subprocess.run(argv, capture_output=True, check=False, timeout=30)
            record.unlink(missing_ok=True)
            gone.append(name)
        finally:
            os.close(fd)
    return gone


@contextlib.contextmanager
def prepared(interface: str, address: str, peers: Sequence[str],
             ports: tuple[int, int]) -> Iterator[ClusterNetwork]:
    """The run's namespace, set up and filtered before anything starts in it; deleted on
    exit (and by the next run's sweep when this process is killed first)."""
    ip = _tool("ip")
    nft = _tool("nft")
    prefix = prefix_on(interface, address)
    sweep()
    name = "appliance-" + secrets.token_hex(4)
    link = "apl" + secrets.token_hex(4)
    claim = _claim(name, link)
    try:
        _run([ip, "netns", "add", name])
        _run([ip, "link", "add", "link", interface, "name", link, "type", "macvlan",
              "mode", "bridge"])
        _run([ip, "link", "set", link, "netns", name])
        _run([ip, "-n", name, "link", "set", link, "name", interface])
        _run([ip, "-n", name, "addr", "add", f"{address}/{prefix}", "dev", interface])
        _run([ip, "netns", "exec", name, nft, "-f", "-"],
             stdin=ruleset(address, peers, ports))
        _run([ip, "netns", "exec", name, "sysctl", "-q", "-w",
              f"net.ipv4.ip_local_port_range={ports[0]} {ports[1]}"])
        _run([ip, "-n", name, "link", "set", "lo", "up"])
        _run([ip, "-n", name, "link", "set", interface, "up"])
        yield ClusterNetwork(name, interface, address, tuple(peers), ports)
    finally:
        with contextlib.suppress(IsolationError, OSError, subprocess.SubprocessError):
            _run([ip, "netns", "del", name])
        with contextlib.suppress(OSError, subprocess.SubprocessError):  # not yet moved
            subprocess.run([ip, "link", "del", link], capture_output=True, check=False,
                           timeout=30)
        (STATE_DIR / f"{name}.lock").unlink(missing_ok=True)
        os.close(claim)


def drops(step: ClusterNetwork) -> list[dict[str, object]]:
    """What the filter refused so far: one entry per destination (address:port, packets)
    and the totals of the output and input counters."""
    nft = _tool("nft")
    out = _run([_tool("ip"), "netns", "exec", step.netns, nft, "-j", "list", "table",
                "inet", TABLE])
    found: list[dict[str, object]] = []
    for item in json.loads(out).get("nftables", []):
        if "set" in item and item["set"].get("name") == "dropped":
            for elem in item["set"].get("elem", []):
                key = elem.get("elem", {}).get("val", {}).get("concat", [])
                packets = elem.get("elem", {}).get("counter", {}).get("packets", 0)
                found.append({"target": ":".join(str(k) for k in key), "packets": packets})
        if "counter" in item and item["counter"].get("packets"):
            found.append({"counter": item["counter"]["name"],
                          "packets": item["counter"]["packets"]})
    return found
