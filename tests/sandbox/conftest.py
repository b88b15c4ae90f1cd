"""Host-side targets for the hostile-code suite: listeners that record every byte that
reaches them (TCP on 127.0.0.1, a filesystem UNIX socket, an abstract UNIX socket)."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest


@dataclass
class Listener:
    """One listening socket on the host, and what reached it."""

    sock: socket.socket
    received: list[bytes] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def serve(self) -> None:
        """Accept and read until stopped."""
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                try:
                    self.received.append(conn.recv(4096) or b"<connected>")
                except OSError:
                    self.received.append(b"<connected>")


@dataclass
class Targets:
    """Everything the payload aims at."""

    port: int
    unix_path: Path
    abstract: str
    passphrase_file: Path
    outside: Path
    listeners: list[Listener]

    def reached(self) -> list[bytes]:
        """Every byte string that reached any host listener."""
        return [data for lst in self.listeners for data in lst.received]


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Targets]:
    """Host listeners (TCP, filesystem and abstract UNIX sockets), a passphrase file and a
    path outside any work area."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    unix_path = tmp_path / "host.sock"
    fs = socket.socket(socket.AF_UNIX)
    fs.bind(str(unix_path))
    abstract = f"appliance-test-{secrets.token_hex(6)}"
    ab = socket.socket(socket.AF_UNIX)
    ab.bind(b"\0" + abstract.encode())
    listeners = [Listener(s) for s in (tcp, fs, ab)]
    threads = []
    for lst in listeners:
        lst.sock.listen(8)
        threads.append(threading.Thread(target=lst.serve, daemon=True))
        threads[-1].start()
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse battery staple\n")
    yield Targets(tcp.getsockname()[1], unix_path, abstract, secret,
                  tmp_path / "outside" / "escaped.txt", listeners)
    for lst in listeners:
        lst.stop.set()
    for thread in threads:
        thread.join(2)
    for lst in listeners:
        lst.sock.close()
