"""Start the trainer (and every other ML-stack job) as a child process in the sandbox.

The sandbox (appliance.sandbox: bubblewrap, namespaces, no capabilities, seccomp) enforces;
the child's audit-hook tripwire reports attempts, which the parent writes to the audit log.
The job, records and the checkpoint key included, goes to the child over stdin; events come
back as JSON lines over a dedicated pipe. Nothing else crosses: the child's environment is
an allow-list, and the passphrase file is named as a secret the sandbox must not see. With
no sandbox available the job is refused (policy network.when_isolation_unavailable =
"refuse"). `APPLIANCE_FORCE_NO_NETNS=1` makes the probe fail, to test that refusal on
machines where the sandbox works.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import sandbox
from appliance.errors import ApplianceError
from appliance.passphrase import PASSPHRASE_FILE_ENV, files_read
from appliance.sandbox.network import LOOPBACK_ONLY, NetworkStep
from appliance.train.cancel import Relay
from appliance.train.events import EVENT_FD_ENV, read_events
from appliance.train.tripwire import WORK_DIRS_ENV

if TYPE_CHECKING:
    from appliance.home import Home

FORCE_NO_NETNS_ENV = sandbox.FORCE_UNAVAILABLE_ENV
CHILD_MODULE = "appliance.train.child"


@dataclass(frozen=True)
class Isolation:
    """How the child will be isolated (the sandbox level in force)."""

    detail: str
    full: bool = True


@dataclass
class ChildResult:
    """What the child left behind: its exit code and the tail of its output."""

    returncode: int
    output_tail: list[str] = field(default_factory=list)
    signalled: bool = False


def require_isolation() -> Isolation:
    """The sandbox level in force, or IsolationError saying why none can be made."""
    level = sandbox.require()
    return Isolation(level.detail, level.full)


def secret_paths() -> tuple[Path, ...]:
    """The files the child must never see: every passphrase file this process read, and
    the one the environment names."""
    named = os.environ.get(PASSPHRASE_FILE_ENV)
    return (*files_read(), *((Path(named),) if named else ()))


def child_spec(*, read_only: tuple[Path, ...] = (), writable: tuple[Path, ...] = (),
               network: NetworkStep = LOOPBACK_ONLY, gpu: bool = True) -> sandbox.Spec:
    """The sandbox of one job: what it reads, where it writes (the first writable directory
    is its working directory), the secrets kept out, its network step, and whether it sees
    the host's GPU."""
    workdir = writable[0] if writable else None
    return sandbox.Spec(read_only=read_only, writable=writable, workdir=workdir,
                        secrets=secret_paths(), network=network, gpu=gpu)


def run_isolated(job: dict[str, Any], on_event: Callable[[dict[str, Any]], None],
                 isolation: Isolation,  # noqa: ARG001 - proof that require_isolation() passed
                 *, spec: sandbox.Spec | None = None,
                 relay: Relay | None = None, launch: bool = False, tail_lines: int = 60,
                 echo_output: bool = False,
                 more_input: Iterable[dict[str, Any]] | None = None) -> ChildResult:
    """Run one job in the isolated child, calling `on_event` for every event it sends.

    The child runs in its own session (a terminal's Ctrl-C reaches this process only). With
    a `relay` (installed by the caller), SIGINT/SIGTERM here reach the child as SIGTERM once
    it has reported `started`, and a second one kills its process group. `launch` starts
    the child as the launcher of several trainer workers (appliance.train.launcher). `spec`
    says what the sandbox shows the child (default: nothing of the host's files).
    `more_input` items follow the job on the child's stdin, one JSON line each as they come
    (an iterator may block for the next one); stdin closes after the last.
    """
    read_fd, write_fd = os.pipe()
    argv = sandbox.python(CHILD_MODULE, *(["launch"] if launch else []))
    spec = spec or child_spec()
    work = os.pathsep.join(str(path.absolute()) for path in spec.writable)
    try:
        proc = sandbox.spawn(argv, spec,
                             env=sandbox.environment({EVENT_FD_ENV: str(write_fd),
                                                      WORK_DIRS_ENV: work}),
                             pass_fds=(write_fd,), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    finally:
        os.close(write_fd)
    if relay is not None:  # SIGKILL goes to the group; SIGTERM to the child, once found
        relay.attach(proc.pid, group=True)
    child = proc.pid
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
            proc.stdin.write(json.dumps(job).encode("utf-8") + b"\n")
            proc.stdin.flush()
            for item in more_input or ():
                proc.stdin.write(json.dumps(item).encode("utf-8") + b"\n")
                proc.stdin.flush()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()

    threads = [threading.Thread(target=drain, daemon=True),
               threading.Thread(target=feed, daemon=True)]
    for thread in threads:
        thread.start()
    with os.fdopen(read_fd, "rb") as events:
        for event in read_events(events):
            if relay is not None and event.get("type") == "started":
                child = _signal_target(proc.pid, int(event.get("pid") or 0))
                if child != proc.pid:
                    relay.attach(child)
                relay.ready(child)
            on_event(event)
    if relay is not None:
        relay.detach(child)
        relay.detach(proc.pid)  # (the same PID when the child is not in a PID namespace)
    returncode = proc.wait()
    for thread in threads:
        thread.join(timeout=5)
    return ChildResult(returncode, list(tail), relay is not None and relay.requested)


def _signal_target(outer: int, inner: int) -> int:
    """The host PID of the child that reported `inner` as its PID (its PID namespace's)."""
    if inner == outer:  # no PID namespace (the test-only weakened sandbox)
        return outer
    return sandbox.host_pid(outer, inner) or outer


def audit_tripwire(home: Home, run_id: str, event: dict[str, Any]) -> None:
    """Write one tripwire report from the child to the audit log, as an `attempted` action:
    the tripwire sees what was tried, not whether the sandbox stopped it (the sandbox's
    guarantees, not this report, say that)."""
    from appliance import audit

    action = str(event.get("action", "network.attempt"))
    fields = {k: v for k, v in event.items() if k not in ("type", "action")}
    audit.record(home, action, outcome="attempted", run_id=run_id, **fields)


def child_error(event: dict[str, Any] | None) -> ApplianceError | None:
    """The operator's error a child job raised, rebuilt from its `error` event (the same
    class of appliance.errors, message, place and hint, so the line and exit code are what
    the job run in this process would give); None for any other failure."""
    from appliance import errors

    if event is None or not isinstance(event.get("error"), dict):
        return None
    kind = getattr(errors, str(event.get("kind")), None)
    if not (isinstance(kind, type) and issubclass(kind, ApplianceError)):
        return None
    fields = event["error"]
    return kind(str(fields.get("message", "")), where=fields.get("where"),
                hint=fields.get("hint"))
