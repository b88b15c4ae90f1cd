"""A `sys.addaudithook` tripwire that reports escape attempts in a sandboxed child.

The sandbox (appliance.sandbox) is what enforces; this hook only reports what was tried,
so every report is an attempt, never a claim that something was blocked. It sees Python
socket calls (`socket`, `_socket`: inet sockets, name look-ups, AF_UNIX connects), ctypes
look-ups of libc's network, namespace, mount and ptrace functions (the ctypes call itself
bypasses Python, but the symbol look-up is audited), namespace calls of the os module
(Python 3.12+), process spawns (`nsenter`/`unshare` reported as namespace attempts; a child
process starts a fresh interpreter, so the spawn is what is reported), and writes, renames,
removals and new directories outside the work area (the directories in WORK_DIRS_ENV, and
the private /tmp and /dev). Each report goes to `report(event_dict)`; a re-entrancy guard
keeps the hook from triggering itself, and reports are capped so a retry loop cannot
flood the audit log.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

NETWORK_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg",
                            "socket.getaddrinfo", "socket.gethostbyname",
                            "socket.gethostbyname_ex", "socket.gethostbyaddr",
                            "socket.bind"})
# a look-up of the sandbox's own host name (its UTS namespace's) answers from /etc/hosts or
# fails; torchrun's agent makes it for every record it keeps (`socket.getfqdn()`)
OWN_NAME_EVENTS = frozenset({"socket.gethostbyaddr", "socket.gethostbyname",
                             "socket.gethostbyname_ex"})
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                          "os.spawn", "os.startfile", "pty.spawn"})
CTYPES_NETWORK_SYMBOLS = frozenset({"connect", "socket", "sendto", "sendmsg", "getaddrinfo",
                                    "gethostbyname", "bind"})
CTYPES_ESCAPE_SYMBOLS = {"setns": "namespace.attempt", "unshare": "namespace.attempt",
                         "clone": "namespace.attempt", "mount": "mount.attempt",
                         "umount2": "mount.attempt", "pivot_root": "mount.attempt",
                         "ptrace": "ptrace.attempt", "process_vm_readv": "ptrace.attempt",
                         "process_vm_writev": "ptrace.attempt",
                         "capset": "capability.attempt"}
NAMESPACE_PROGRAMS = frozenset({"nsenter", "unshare", "setpriv", "capsh", "bwrap", "sudo",
                                "su", "ip"})
FILE_EVENTS = frozenset({"os.mkdir", "os.rename", "os.remove", "os.rmdir", "os.symlink",
                         "os.link", "os.truncate", "shutil.rmtree"})
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WORK_DIRS_ENV = "APPLIANCE_WORK_DIRS"
PRIVATE_DIRS = ("/tmp", "/dev")  # noqa: S108 - the sandbox's own tmpfs and /dev
INET = (int(socket.AF_INET), int(socket.AF_INET6))
UNIX = int(socket.AF_UNIX)
MAX_REPORTS = 200
PREFIXES = ("socket.", "subprocess.", "os.", "ctypes.dlsym", "pty.", "open", "shutil.")


def _target(args: tuple[Any, ...]) -> str:
    for arg in args[1:]:
        if isinstance(arg, tuple) and arg:
            return ":".join(str(part) for part in arg[:2])
        if isinstance(arg, str | bytes):
            return arg if isinstance(arg, str) else arg.decode("utf-8", "replace")
    return ""


def _work_dirs() -> tuple[str, ...]:
    named = os.environ.get(WORK_DIRS_ENV, "").split(os.pathsep)
    return (*PRIVATE_DIRS, *(d for d in named if d))


def _outside(path: object, work: tuple[str, ...]) -> str | None:
    """The absolute path when `path` names a place outside the work area, else None."""
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    if not isinstance(path, str):  # a file descriptor, or a path-like already checked
        return None
    full = os.path.abspath(path)
    inside = any(full == d or full.startswith(d.rstrip("/") + "/") for d in work)
    return None if inside else full[:300]


def _writes(args: tuple[Any, ...]) -> bool:
    mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
    if isinstance(mode, str) and any(c in mode for c in "wax+"):
        return True
    return isinstance(flags, int) and bool(flags & WRITE_FLAGS)


def classify_file(event: str, args: tuple[Any, ...],
                  work: tuple[str, ...]) -> dict[str, Any] | None:
    """A write (open for writing, rename, removal, ...) outside the work area."""
    if event == "open" and not _writes(args):
        return None
    paths = args[:2] if event in ("os.rename", "os.symlink", "os.link") else args[:1]
    for path in paths:
        where = _outside(path, work)
        if where is not None:
            return {"action": "file.write_attempt", "via": event, "target": where}
    return None


def classify_spawn(event: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """A process spawn; `nsenter`, `unshare` and the like are namespace attempts."""
    program = args[0] if args else ""
    if isinstance(program, list | tuple):
        program = program[0] if program else ""
    if isinstance(program, bytes):
        program = program.decode("utf-8", "replace")
    name = os.path.basename(str(program))
    action = "namespace.attempt" if name in NAMESPACE_PROGRAMS else "trainer.process_spawn"
    return {"action": action, "via": event, "target": str(program)[:200]}


def classify_socket(event: str, args: tuple[Any, ...]) -> dict[str, Any] | None:  # noqa: PLR0911
    """Inet sockets, name look-ups and AF_UNIX connects."""
    if event == "socket.__new__":
        family = args[1] if len(args) > 1 else None
        if isinstance(family, int) and family in INET:
            return {"action": "network.attempt", "via": "socket.__new__",
                    "family": int(family)}
        return None
    if event not in NETWORK_EVENTS:
        return None
    if event in OWN_NAME_EVENTS and args and args[0] == socket.gethostname():
        return None  # torchrun's agent names its own host in its records: no network
    sock = args[0] if args else None
    family = getattr(sock, "family", None)
    if family is not None and int(family) == UNIX:
        if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
            return {"action": "unix.connect_attempt", "via": event, "target": _target(args)}
        return None
    if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg") \
            and family is not None and int(family) not in INET:
        return None
    return {"action": "network.attempt", "via": event, "target": _target(args)}


def classify(event: str, args: tuple[Any, ...],  # noqa: PLR0911 - one branch per kind
             work: tuple[str, ...] = PRIVATE_DIRS) -> dict[str, Any] | None:
    """The report for one audit event, or None when it is not an attempt worth reporting."""
    if event.startswith("socket."):
        return classify_socket(event, args)
    if event == "ctypes.dlsym":
        name = args[1] if len(args) > 1 else None
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if name in CTYPES_NETWORK_SYMBOLS:
            return {"action": "network.attempt", "via": "ctypes.dlsym", "target": name}
        if isinstance(name, str) and name in CTYPES_ESCAPE_SYMBOLS:
            return {"action": CTYPES_ESCAPE_SYMBOLS[name], "via": "ctypes.dlsym",
                    "target": name}
        return None
    if event in ("os.setns", "os.unshare"):
        return {"action": "namespace.attempt", "via": event, "target": ""}
    if event in SPAWN_EVENTS:
        return classify_spawn(event, args)
    if event == "open" or event in FILE_EVENTS:
        return classify_file(event, args, work)
    return None


def install(report: Callable[[dict[str, Any]], None]) -> None:
    """Install the tripwire for the rest of this process's life (audit hooks cannot be
    removed)."""
    guard = threading.local()
    count = [0]
    work = _work_dirs()

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not event.startswith(PREFIXES) or getattr(guard, "busy", False):
            return
        guard.busy = True
        try:
            found = classify(event, args, work)
            if found is None:
                return
            count[0] += 1
            if count[0] <= MAX_REPORTS:
                found["thread"] = threading.current_thread().name
                report(found)
        except Exception:  # noqa: S110 - a failing report must never break the caller
            pass
        finally:
            guard.busy = False

    sys.addaudithook(hook)
