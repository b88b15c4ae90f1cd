"""Entry point of the isolated trainer process: `python -m appliance.train.child`.

Started by appliance.train.isolation inside a new network namespace. First thing, before
reading anything: the audit-hook tripwire (reports go to the parent over the event pipe,
and the parent writes them to the audit log). Then the job (recipe, paths, records and the
run's checkpoint key) is read from stdin — records never touch the disk — and training
runs. SIGINT/SIGTERM set a flag the loop checks at each step boundary.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from types import FrameType
from typing import Any

from appliance.train.events import EVENT_FD_ENV, EventWriter
from appliance.train.tripwire import install

EXIT_STOPPED = 3
EXIT_FAILED = 1


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process if the parent dies (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main() -> int:
    """Run one training job from stdin; exit 0 done, 3 stopped, 1 failed."""
    events = EventWriter(int(os.environ[EVENT_FD_ENV]))
    install(lambda found: events.emit("tripwire", **found))
    _die_with_parent()
    stop = {"requested": False}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop["requested"] = True
        events.emit("signal", signal=signal.Signals(signum).name)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    job: dict[str, Any] = json.loads(sys.stdin.buffer.read())
    from appliance.offline import OFFLINE_ENV

    events.emit("started", pid=os.getpid(), interfaces=_interfaces(),
                offline={k: os.environ.get(k) for k in OFFLINE_ENV})
    if job.get("probe"):
        from appliance.train import probes

        return probes.run(job, events.emit)
    if job.get("privacy"):  # the privacy check (issue 8) measures canaries in this child
        from appliance.privacy import worker

        return worker.run(job, events.emit)
    from appliance.train import trainer

    try:
        return trainer.run(job, events.emit, lambda: stop["requested"])
    except Exception as exc:
        from appliance.errors import ApplianceError

        message = exc.line() if isinstance(exc, ApplianceError) else str(exc)[:500]
        events.emit("error", kind=type(exc).__name__, message=message)
        if os.environ.get("APPLIANCE_DEBUG"):
            raise
        return EXIT_FAILED


def _interfaces() -> list[str]:
    import socket

    return [name for _, name in socket.if_nameindex()]


if __name__ == "__main__":
    sys.exit(main())
