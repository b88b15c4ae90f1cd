"""A `sys.addaudithook` tripwire that reports network and process attempts in the trainer.

The network namespace is what enforces isolation; this hook only reports. It sees Python
socket calls (`socket`, `_socket`), name lookups, ctypes look-ups of libc's socket functions
(the ctypes call itself bypasses Python, but the symbol look-up is audited), and process
spawns (a child process starts a fresh interpreter, so the spawn is what is reported).
Each report goes to `report(event_dict)`; a re-entrancy guard keeps the hook from
triggering itself, and reports are capped so a retry loop cannot flood the audit log.
"""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

NETWORK_EVENTS = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg",
                            "socket.getaddrinfo", "socket.gethostbyname",
                            "socket.gethostbyname_ex", "socket.gethostbyaddr",
                            "socket.bind"})
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                          "os.spawn", "os.startfile", "pty.spawn"})
CTYPES_NETWORK_SYMBOLS = frozenset({"connect", "socket", "sendto", "sendmsg", "getaddrinfo",
                                    "gethostbyname", "bind"})
INET = (int(socket.AF_INET), int(socket.AF_INET6))
MAX_REPORTS = 200
PREFIXES = ("socket.", "subprocess.", "os.", "ctypes.dlsym", "pty.")


def _target(args: tuple[Any, ...]) -> str:
    for arg in args[1:]:
        if isinstance(arg, tuple) and arg:
            return ":".join(str(part) for part in arg[:2])
        if isinstance(arg, str | bytes):
            return arg if isinstance(arg, str) else arg.decode("utf-8", "replace")
    return ""


def classify(event: str, args: tuple[Any, ...]) -> dict[str, Any] | None:  # noqa: PLR0911
    """The report for one audit event, or None when it is not a network/process attempt."""
    if event == "socket.__new__":
        family = args[1] if len(args) > 1 else None
        if isinstance(family, int) and family in INET:
            return {"action": "network.blocked", "via": "socket.__new__",
                    "family": int(family)}
        return None
    if event in NETWORK_EVENTS:
        sock = args[0] if args else None
        family = getattr(sock, "family", None)
        if event in ("socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg") \
                and family is not None and int(family) not in INET:
            return None
        return {"action": "network.blocked", "via": event, "target": _target(args)}
    if event == "ctypes.dlsym":
        name = args[1] if len(args) > 1 else None
        if isinstance(name, bytes):
            name = name.decode("ascii", "replace")
        if name in CTYPES_NETWORK_SYMBOLS:
            return {"action": "network.blocked", "via": "ctypes.dlsym", "target": name}
        return None
    if event in SPAWN_EVENTS:
        program = args[0] if args else ""
        if isinstance(program, list | tuple):
            program = program[0] if program else ""
        return {"action": "trainer.process_spawn", "via": event,
                "target": str(program)[:200]}
    return None


def install(report: Callable[[dict[str, Any]], None]) -> None:
    """Install the tripwire for the rest of this process's life (audit hooks cannot be
    removed)."""
    guard = threading.local()
    count = [0]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not event.startswith(PREFIXES) or getattr(guard, "busy", False):
            return
        found = classify(event, args)
        if found is None:
            return
        guard.busy = True
        try:
            count[0] += 1
            if count[0] <= MAX_REPORTS:
                found["thread"] = threading.current_thread().name
                report(found)
        except Exception:  # noqa: S110 - a failing report must never break the caller
            pass
        finally:
            guard.busy = False

    sys.addaudithook(hook)
