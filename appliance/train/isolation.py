"""Start the trainer as a child process in a new kernel network namespace.

The namespace enforces (the child has only a loopback interface, down); the child's
audit-hook tripwire reports attempts, which the parent writes to the audit log. The
`*_OFFLINE` switches are in the child's environment from its first instruction. The job,
records included, goes to the child over stdin; events come back as JSON lines over a
dedicated pipe. With no namespace available, training is refused (policy
network.when_isolation_unavailable = "refuse"). `APPLIANCE_FORCE_NO_NETNS=1` makes the
probe fail, to test that refusal on machines where namespaces work.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance import netns, offline
from appliance.errors import IsolationError
from appliance.resources import REPO_ROOT
from appliance.train.cancel import Relay
from appliance.train.events import EVENT_FD_ENV, PARENT_PID_ENV, read_events

if TYPE_CHECKING:
    from appliance.home import Home

FORCE_NO_NETNS_ENV = "APPLIANCE_FORCE_NO_NETNS"
CHILD_MODULE = "appliance.train.child"


@dataclass(frozen=True)
class Isolation:
    """How the trainer will be isolated."""

    prefix: tuple[str, ...]
    detail: str


@dataclass
class ChildResult:
    """What the child left behind: its exit code and the tail of its output."""

    returncode: int
    output_tail: list[str] = field(default_factory=list)
    signalled: bool = False


def require_isolation() -> Isolation:
    """The namespace prefix to use, or IsolationError saying why none can be created."""
    if os.environ.get(FORCE_NO_NETNS_ENV):
        detail = f"network namespaces disabled by {FORCE_NO_NETNS_ENV}"
        support = netns.NamespaceSupport(False, (), detail)
    else:
        support = netns.probe()
    if not support.available:
        raise IsolationError(f"no network namespace can be created: {support.detail}",
                             where="training isolation",
                             hint="the policy refuses to train without one "
                                  "(network.when_isolation_unavailable = \"refuse\"); "
                                  "appliance doctor shows the checks")
    return Isolation(support.prefix, support.detail)


def child_env(event_fd: int) -> dict[str, str]:
    """The child's environment: ours, the offline switches, the event pipe, our sources."""
    env = dict(os.environ)
    offline.apply(env)
    env[EVENT_FD_ENV] = str(event_fd)
    env[PARENT_PID_ENV] = str(os.getpid())
    paths = [str(REPO_ROOT), *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_isolated(job: dict[str, Any], on_event: Callable[[dict[str, Any]], None],
                 isolation: Isolation, *, relay: Relay | None = None, launch: bool = False,
                 tail_lines: int = 60, echo_output: bool = False) -> ChildResult:
    """Run one job in the isolated child, calling `on_event` for every event it sends.

    The child runs in its own session (a terminal's Ctrl-C reaches this process only). With
    a `relay` (installed by the caller), SIGINT/SIGTERM here reach the child as SIGTERM once
    it has reported `started`, and a second one kills its process group. `launch` starts
    the child as the launcher of several trainer workers (appliance.train.launcher).
    """
    read_fd, write_fd = os.pipe()
    argv = [*isolation.prefix, sys.executable, "-m", CHILD_MODULE, *(["launch"] if launch else [])]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                env=child_env(write_fd), close_fds=True,
                                start_new_session=True)
    finally:
        os.close(write_fd)
    if relay is not None:
        relay.attach(proc.pid, group=True)
    tail: collections.deque[str] = collections.deque(maxlen=tail_lines)

    def drain() -> None:
        assert proc.stdout is not None  # noqa: S101 - set by Popen above
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            tail.append(line)
            if echo_output:
                sys.stderr.write(line + "\n")

    def feed() -> None:
        assert proc.stdin is not None  # noqa: S101 - set by Popen above
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(json.dumps(job).encode("utf-8"))
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()

    threads = [threading.Thread(target=drain, daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for thread in threads:
        thread.start()
    with os.fdopen(read_fd, "rb") as events:
        for event in read_events(events):
            if relay is not None and event.get("type") == "started":
                relay.ready(proc.pid)
            on_event(event)
    if relay is not None:
        relay.detach(proc.pid)
    returncode = proc.wait()
    for thread in threads:
        thread.join(timeout=5)
    return ChildResult(returncode, list(tail), relay is not None and relay.requested)


def audit_tripwire(home: Home, run_id: str, event: dict[str, Any]) -> None:
    """Write one tripwire report from the child to the audit log. Network attempts are
    `network.blocked` (the namespace stopped them); process spawns are reported, since the
    new process is inside the same namespace."""
    from appliance import audit

    action = str(event.get("action", "network.blocked"))
    fields = {k: v for k, v in event.items() if k not in ("type", "action")}
    outcome = "blocked" if action == "network.blocked" else "reported"
    audit.record(home, action, outcome=outcome, run_id=run_id, **fields)
