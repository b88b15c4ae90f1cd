"""The launcher of a multi-process (DDP) run: PyTorch's torchrun agent, inside the sandbox.

Started as `python -m appliance.train.child launch` by appliance.train.isolation when the
recipe asks for `processes > 1` or for several nodes. It calls torchrun as a library
(`torch.distributed.launcher.api.elastic_launch`, what `torch.distributed.run` calls):
PyTorch's elastic agent starts the workers (`python -m appliance.train.child worker`, one
per local rank, with torchrun's environment contract), runs the static TCP rendezvous
(`--rdzv-backend static`: node ranks are given, so global ranks, and with them the data
shards, are the same on every run), watches the workers, stops them all when one fails and
passes SIGTERM on to them. The launcher adds what torchrun cannot know about: the job goes
to each worker over appliance.train.jobchannel (an abstract AF_UNIX socket with a one-time
token; records never touch a disk), and the workers' events come back the same way to be
relayed to the parent: everything the first local rank reports, plus tripwire reports,
errors and end-of-run summaries from every rank (tagged `rank`).

Single machine: the rendezvous is on the namespace's own loopback (127.0.0.1:29500; the
namespace is private to the run, so nothing else can listen there). Several machines
(`job["cluster"]`): on the cluster interface the sandbox's network step set up, to the
rendezvous address node 0 listens on.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, BinaryIO

from appliance import netns
from appliance.train import distributed, jobchannel
from appliance.train.cancel import EXIT_STOPPED, SIGNALS
from appliance.train.events import EVENT_FD_ENV, PARENT_PID_ENV, Kind, TrainJob, read_events
from appliance.train.recipe import Recipe

Emit = Callable[..., None]
CHILD_MODULE = "appliance.train.child"
RENDEZVOUS_ID = "appliance-training"
SHUTDOWN_S = 600  # a stopping worker finishes its step and writes the checkpoint first
FROM_EVERY_RANK = frozenset({Kind.TRIPWIRE, Kind.ERROR, Kind.WORKER_FINISHED})


@dataclass
class Progress:
    """What the launcher learnt from its workers (for `workers` and a `stopped` of its own)."""

    topology: distributed.Topology
    ready: list[int] = field(default_factory=list)
    step: int = 0
    checkpoint: bool = False
    stopped: bool = False
    served: set[tuple[int, int]] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    channels: list[threading.Thread] = field(default_factory=list)
    failed: set[int] = field(default_factory=set)  # ranks that reported their own error


def _relay_events(rank: int, stream: BinaryIO, emit: Emit, progress: Progress) -> None:
    """Pass one worker's events on to the parent."""
    topology = progress.topology
    first = rank == topology.first_rank
    for event in read_events(stream):
        kind = str(event.pop("type", ""))
        if kind == Kind.STARTED:
            with progress.lock:
                progress.ready.append(int(event.get("pid") or 0))
                everyone = len(progress.ready) == topology.nproc
            if everyone:
                emit(Kind.WORKERS_STARTED, world_size=topology.world_size, nnodes=topology.nnodes,
                     node_rank=topology.node_rank, pids=progress.ready,
                     master=topology.rendezvous, launcher="torch.distributed.run",
                     loopback="up")
            continue
        if first:
            if kind in (Kind.CHECKPOINT, Kind.RESUMED):
                progress.step = int(event.get("step", progress.step))
                progress.checkpoint = kind == Kind.CHECKPOINT
            progress.stopped = progress.stopped or kind == Kind.STOPPED
        if kind == Kind.ERROR:
            progress.failed.add(rank)
        if first or kind in FROM_EVERY_RANK:
            emit(kind, **{**event, "rank": rank})


def _serve_one(conn: socket.socket, job: dict[str, Any], token: str, emit: Emit,
               progress: Progress) -> None:
    """One worker's connection: its greeting, its job, then its events."""
    with conn, conn.makefile("rb") as stream:
        try:
            with progress.lock:
                rank = jobchannel.hello(stream, token, progress.served,
                                        progress.topology.ranks)
        except jobchannel.Refused as exc:
            emit(Kind.TRIPWIRE, action="job.refused", via="launcher", target=str(exc))
            return
        jobchannel.send_job(conn, job)
        _relay_events(rank, stream, emit, progress)


def _serve(server: socket.socket, job: dict[str, Any], token: str, emit: Emit,
           progress: Progress) -> None:
    """Accept workers for as long as the launcher lives (a restarted worker comes back)."""
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        thread = threading.Thread(target=_serve_one, args=(conn, job, token, emit, progress),
                                  name="worker-channel", daemon=True)
        progress.channels.append(thread)
        thread.start()


class Signals:
    """Until torchrun installs its own handlers (when it starts the workers), a SIGTERM or
    SIGINT is recorded and, once the launch has begun, raised as torchrun's own
    SignalException, so that a stop landing in between still reaches every worker."""

    def __init__(self) -> None:
        self.received = False
        self.armed = False

    def install(self) -> None:
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        self.received = True
        if self.armed:
            from torch.distributed.elastic.multiprocessing.api import SignalException

            raise SignalException(f"launcher got signal {signum}",
                                  sigval=signal.Signals(signum))


def _config(topology: distributed.Topology) -> Any:
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, Std
    from torch.distributed.launcher.api import LaunchConfig

    # the workers' output goes where the launcher's goes (the parent's --debug tail); the
    # agent's own log directory is a fresh one in the sandbox's private /tmp
    logs = DefaultLogsSpecs(redirects=Std.NONE, tee=Std.NONE)
    return LaunchConfig(
        min_nodes=topology.nnodes, max_nodes=topology.nnodes,
        # the rendezvous id must be the same on every node, and each node's parent names
        # its run on its own: the store is node 0's, fresh for this run, so one fixed id
        nproc_per_node=topology.nproc, run_id=RENDEZVOUS_ID, role="trainer",
        rdzv_backend="static", rdzv_endpoint=topology.rendezvous,
        rdzv_configs={"rank": topology.node_rank,
                      "timeout": int(distributed.TIMEOUT.total_seconds())},
        max_restarts=0, monitor_interval=0.2, local_addr=topology.local_addr,
        logs_specs=logs, shutdown_timeout=SHUTDOWN_S)


def _launch(topology: distributed.Topology,
            signals: Signals) -> dict[int, int]:
    """torchrun's agent over this node's workers: {} when every worker ended with 0, else
    the exit status of each failed global rank; {-1: EXIT_STOPPED} for a signal."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import elastic_launch

    launch = elastic_launch(_config(topology), sys.executable)
    signals.armed = True
    try:
        launch("-m", CHILD_MODULE, "worker")
    except ChildFailedError as exc:
        return {int(rank): int(failure.exitcode) for rank, failure in exc.failures.items()}
    except SignalException:
        return {-1: EXIT_STOPPED}
    finally:
        signals.armed = False
    return {}


def run(job: TrainJob, emit: Emit, signals: Signals) -> int:
    """Run the job on this node's workers (`signals` installed before `started` was
    reported); 0 done, 3 stopped, 1 failed."""
    from appliance.train.trainer import total_steps

    recipe = Recipe.model_validate(job["recipe"])
    topology = distributed.Topology.of(recipe, job.get("cluster"))
    if topology.nnodes == 1:
        netns.loopback_up()
    server, channel = jobchannel.new_endpoint()
    os.environ.pop(EVENT_FD_ENV, None)  # the workers report over their job channel
    os.environ.update({**channel, **topology.backend_env(),
                       PARENT_PID_ENV: str(os.getpid())})
    progress = Progress(topology)
    threading.Thread(target=_serve, args=(server, job, channel[jobchannel.TOKEN_ENV], emit,
                                          progress), name="job-channel", daemon=True).start()
    codes = {-1: EXIT_STOPPED} if signals.received else _launch(topology, signals)
    with contextlib.suppress(OSError):
        server.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
    server.close()
    for thread in list(progress.channels):  # the workers are gone: their last lines
        thread.join(timeout=10)
    if not codes:
        return 0
    failed = failures(codes, signals.received)
    if not failed:
        if not progress.stopped:
            emit(Kind.STOPPED, step=progress.step, checkpoint=progress.checkpoint,
                 total_steps=total_steps(recipe, len(job["train"])))
        return EXIT_STOPPED
    for rank, code in sorted(failed.items()):
        if rank in progress.failed:  # its own error line says more
            continue
        emit(Kind.ERROR, kind="WorkerExit", rank=rank,
             message=f"training worker of rank {rank} {exit_status(code)}")
    return 1


def failures(codes: dict[int, int], signalled: bool) -> dict[int, int]:
    """The ranks whose exit is a failure of the run (empty: the run was stopped).

    torchrun's agent ends the whole group as soon as one worker exits non-zero: it sends
    SIGTERM to every worker still running, which then stops as if cancelled (exit 3,
    rank 0 even with a checkpoint). So a stopped rank says nothing by itself: the run
    stopped only when this node was asked to (`signalled`; its workers may then fail in a
    collective their stopped peers left), or when every worker that ended non-zero
    stopped (a cancel on another node reaches these ranks through the per-step
    all-reduce). Otherwise the other ranks are the failure, and are reported as one.
    """
    if signalled:
        return {}
    return {rank: code for rank, code in codes.items() if code != EXIT_STOPPED}


def exit_status(code: int) -> str:
    """`exited with status N`, or `was killed by SIGNAME` for a negative status."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"
