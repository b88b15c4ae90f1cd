"""How a torchrun worker gets its job and sends its events: one AF_UNIX stream per worker.

torchrun's agent starts each worker with `subprocess.Popen(close_fds=True)` and its own
environment: no pipe of ours survives into the worker, and the job (records, the run's
checkpoint key) must never be written to a file. So the launcher listens on an *abstract*
AF_UNIX socket (no file anywhere; abstract names belong to the network namespace, which is
the run's own sandbox namespace) and gives the workers, through the environment torchrun
passes on, the name and a random token. A worker connects before anything else runs in it
(before the tripwire, so the connect is not reported as an attempt: only our own modules
have been imported by then), sends the token with its RANK and TORCHELASTIC_RESTART_COUNT,
and receives the job as one JSON line; each (rank, restart) is served once, so the token
cannot be replayed for a second copy. The same connection then carries the worker's event
lines back to the launcher, which relays them to the parent.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
import socket
from typing import Any, BinaryIO

SOCKET_ENV = "APPLIANCE_JOB_SOCKET"
TOKEN_ENV = "APPLIANCE_JOB_TOKEN"  # noqa: S105 - the name of a variable
MAX_HELLO = 4096


class Refused(Exception):
    """A connection that did not prove it is one of this run's workers."""


def new_endpoint() -> tuple[socket.socket, dict[str, str]]:
    """A listening abstract socket and the environment that names it to the workers."""
    name = "appliance-job-" + secrets.token_hex(8)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(64)
    return server, {SOCKET_ENV: name, TOKEN_ENV: secrets.token_hex(32)}


def hello(stream: BinaryIO, token: str, served: set[tuple[int, int]], ranks: range) -> int:
    """Check one worker's greeting (the first line of its stream); its global rank, or
    Refused."""
    line = stream.readline(MAX_HELLO)
    try:
        greeting = json.loads(line)
        rank, restart = int(greeting["rank"]), int(greeting["restart"])
        offered = str(greeting["token"])
    except (ValueError, KeyError, TypeError):
        raise Refused("malformed greeting") from None
    if not hmac.compare_digest(offered.encode(), token.encode()):
        raise Refused("wrong token")
    if rank not in ranks or (rank, restart) in served:
        raise Refused(f"rank {rank} (restart {restart}) is not expected here")
    served.add((rank, restart))
    return rank


def send_job(conn: socket.socket, job: dict[str, Any]) -> None:
    """The job as one line (JSON escapes every newline inside it)."""
    conn.sendall(json.dumps(job).encode("utf-8") + b"\n")


def connect() -> socket.socket:
    """The worker's side: connect and greet (called before the tripwire is installed)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect("\0" + os.environ[SOCKET_ENV])
    greeting = {"token": os.environ.pop(TOKEN_ENV), "rank": int(os.environ["RANK"]),
                "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))}
    sock.sendall(json.dumps(greeting).encode("utf-8") + b"\n")
    return sock


def receive_job(sock: socket.socket) -> dict[str, Any]:
    """The worker's job, read from its connection."""
    with sock.makefile("rb") as stream:
        line = stream.readline()
    if not line:
        raise ConnectionError("the launcher sent no job")
    job: dict[str, Any] = json.loads(line)
    return job
