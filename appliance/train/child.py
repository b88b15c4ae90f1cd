"""Entry point of the isolated trainer process: `python -m appliance.train.child [launch |
worker]`.

Started by appliance.train.isolation inside the sandbox (appliance.sandbox), or, for
multi-process runs, by torchrun's agent (appliance.train.launcher) inside that same
sandbox, once per rank (`worker`).
Every ML-stack job runs here (training, `kind` jobs of JOBS). First thing,
before reading anything: the audit-hook tripwire (reports go to the parent over the event
pipe, and the parent writes them to the audit log), the parent-death signal, and the
SIGINT/SIGTERM handling of appliance.train.cancel; then the `started` event, which tells
the parent that this process may be signalled. Then the job (recipe, paths, records and the
run's checkpoint key) is read from stdin — records never touch the disk — and runs.

`launch` makes this process the launcher of `recipe.processes` trainer workers instead of a
trainer itself. A `worker` has no pipe of ours (torchrun closes inherited descriptors): it
first connects to its launcher's job channel (appliance.train.jobchannel), which then
carries its job in and its events out.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, cast

from appliance.train.cancel import StopFlag
from appliance.train.events import EVENT_FD_ENV, PARENT_PID_ENV, EventWriter, Kind

if TYPE_CHECKING:
    from appliance.train.events import TrainJob
from appliance.train.tripwire import install

EXIT_FAILED = 1
# Jobs other than training, by `job["kind"]`: the module's run(job, emit) -> exit status.
# A new ML-stack job (inference, a format conversion) is one more entry here.
JOBS = {"probe": "appliance.train.probes", "privacy": "appliance.privacy.worker",
        "merge": "appliance.train.merge", "gguf": "appliance.export.gguf_job",
        "generate": "appliance.train.generate", "scrub": "appliance.scrub.job",
        "convert": "appliance.models.convert_job"}


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process if the parent dies (Linux prctl); if the
    parent already died before the request was made, end now."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    expected = os.environ.get(PARENT_PID_ENV)
    if expected and os.getppid() != int(expected):
        os._exit(EXIT_FAILED)


def main() -> int:
    """Run one job from stdin; exit 0 done, 3 stopped, 1 failed."""
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    channel = None
    if mode == "worker":  # before the tripwire: our own connect, nothing else ran yet
        from appliance.train import jobchannel

        channel = jobchannel.connect()
    events = EventWriter(channel.fileno() if channel else int(os.environ[EVENT_FD_ENV]))
    install(lambda found: events.emit(Kind.TRIPWIRE, **found))
    _die_with_parent()
    launcher = mode == "launch"
    stop = StopFlag(events.emit)
    if launcher:
        from appliance.train import launcher as launch

        signals = launch.Signals()
        signals.install()
    else:
        stop.install()
    from appliance.offline import OFFLINE_ENV

    events.emit(Kind.STARTED, pid=os.getpid(), interfaces=_interfaces(),
                offline={k: os.environ.get(k) for k in OFFLINE_ENV})
    if channel is not None:  # a torchrun worker: the job from its launcher's channel
        job: dict[str, Any] = jobchannel.receive_job(channel)
    else:  # the job is the first line of stdin; a job may read more lines after it
        job = json.loads(sys.stdin.buffer.readline())  # (generate's interactive session)
    kind = job.get("kind") or ("probe" if job.get("probe") else
                                "privacy" if job.get("privacy") else
                                "generate" if job.get("generate") else None)
    try:
        if kind is not None:
            return int(_job_module(kind).run(job, events.emit))
        if launcher:
            return launch.run(cast("TrainJob", job), events.emit, signals)
        from appliance.train import trainer

        return trainer.run(cast("TrainJob", job), events.emit, stop)
    except Exception as exc:  # every job's failure is one `error` event for the parent
        from appliance.errors import ApplianceError

        if isinstance(exc, ApplianceError):  # the parent can raise the same error again
            events.emit(Kind.ERROR, kind=type(exc).__name__, message=exc.line(),
                        error={"message": exc.message, "where": exc.where, "hint": exc.hint})
        else:
            events.emit(Kind.ERROR, kind=type(exc).__name__, message=str(exc)[:500])
        if os.environ.get("APPLIANCE_DEBUG"):
            raise
        return EXIT_FAILED


def _job_module(kind: str) -> Any:
    """The module whose `run(job, emit) -> int` does job `kind` (JOBS)."""
    import importlib

    if kind not in JOBS:
        raise SystemExit(f"appliance child: unknown job kind {kind!r}")
    return importlib.import_module(JOBS[kind])


def _interfaces() -> list[str]:
    import socket

    return [name for _, name in socket.if_nameindex()]


if __name__ == "__main__":
    status = main()
    if sys.argv[1:] == ["worker"]:  # no destructors (appliance.train.distributed._LIVE)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
