"""The launcher of a multi-process (DDP) run, inside the isolated child's network namespace.

Started as `python -m appliance.train.child launch` by appliance.train.isolation when the
recipe asks for `processes > 1`. It plays the part of torchrun's agent, without leaving the
namespace: it brings the namespace's own loopback up (a loopback private to this run, not
the host's: nothing outside the namespace becomes reachable), starts one worker per rank
(`python -m appliance.train.child` with torchrun's environment contract; each installs the
tripwire and the stop handling first, like a single-process trainer), hands each the job
over its stdin (records stay in memory), and relays their events to the parent over its own
event pipe: everything rank 0 reports, plus tripwire reports, errors and end-of-run
summaries from every rank (tagged `rank`). SIGTERM from the parent reaches every worker
once it has reported `started`. As in torchrun, when one worker fails the others are given
GRACE_S seconds and then killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance import netns
from appliance.train import distributed
from appliance.train.cancel import EXIT_STOPPED, Relay
from appliance.train.events import EVENT_FD_ENV, PARENT_PID_ENV, Kind, TrainJob, read_events
from appliance.train.recipe import Recipe

Emit = Callable[..., None]
CHILD_MODULE = "appliance.train.child"
GRACE_S = 30.0
POLL_S = 0.2
FROM_EVERY_RANK = frozenset({Kind.TRIPWIRE, Kind.ERROR, Kind.WORKER_FINISHED})


@dataclass
class Progress:
    """What the launcher learnt from rank 0 (for a `stopped` event of its own)."""

    size: int
    ready: list[int] = field(default_factory=list)
    step: int = 0
    checkpoint: bool = False
    stopped: bool = False


def _start(rank: int, size: int, payload: bytes, relay: Relay) -> tuple[subprocess.Popen[bytes],
                                                                        int]:
    """One worker process and the read end of its event pipe."""
    read_fd, write_fd = os.pipe()
    env = {**os.environ, **distributed.worker_env(rank, size), EVENT_FD_ENV: str(write_fd),
           PARENT_PID_ENV: str(os.getpid())}
    try:
        proc = subprocess.Popen([sys.executable, "-m", CHILD_MODULE], stdin=subprocess.PIPE,
                                pass_fds=(write_fd,), env=env, close_fds=True)
    finally:
        os.close(write_fd)
    relay.attach(proc.pid)

    def feed() -> None:
        assert proc.stdin is not None  # noqa: S101 - set by Popen above
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(payload)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()

    threading.Thread(target=feed, name=f"feed-{rank}", daemon=True).start()
    return proc, read_fd


def _relay_events(rank: int, proc: subprocess.Popen[bytes], read_fd: int, emit: Emit,
                  relay: Relay, progress: Progress) -> None:
    """Pass one worker's events on to the parent."""
    with os.fdopen(read_fd, "rb") as stream:
        for event in read_events(stream):
            kind = str(event.pop("type", ""))
            if kind == Kind.STARTED:
                relay.ready(proc.pid)
                progress.ready.append(proc.pid)
                if len(progress.ready) == progress.size:
                    emit(Kind.WORKERS_STARTED, world_size=progress.size, pids=progress.ready,
                         master=f"{distributed.MASTER_ADDR}:{distributed.MASTER_PORT}",
                         loopback="up")
                continue
            if rank == 0:
                if kind in (Kind.CHECKPOINT, Kind.RESUMED):
                    progress.step = int(event.get("step", progress.step))
                    progress.checkpoint = kind == Kind.CHECKPOINT
                progress.stopped = progress.stopped or kind == Kind.STOPPED
            if rank == 0 or kind in FROM_EVERY_RANK:
                emit(kind, **{**event, "rank": rank})


def _supervise(procs: list[subprocess.Popen[bytes]], relay: Relay) -> list[int]:
    """Wait for every worker; once one has failed, the rest get GRACE_S seconds."""
    deadline: float | None = None
    codes: list[int | None] = [None] * len(procs)
    while any(code is None for code in codes):
        for i, proc in enumerate(procs):
            if codes[i] is None and (code := proc.poll()) is not None:
                codes[i] = code
                relay.detach(proc.pid)
        if deadline is None and any(code not in (None, 0) for code in codes):
            deadline = time.monotonic() + GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            relay.kill_all()
        time.sleep(POLL_S)
    return [int(code) for code in codes if code is not None]


def run(job: TrainJob, emit: Emit, relay: Relay) -> int:
    """Run the job on `recipe.processes` workers; 0 done, 3 stopped, 1 failed."""
    from appliance.train.trainer import total_steps

    recipe = Recipe.model_validate(job["recipe"])
    size = recipe.processes
    netns.loopback_up()
    payload = json.dumps(job).encode("utf-8")
    progress = Progress(size)
    started = [_start(rank, size, payload, relay) for rank in range(size)]
    threads = [threading.Thread(target=_relay_events, name=f"events-{rank}",
                                args=(rank, proc, fd, emit, relay, progress), daemon=True)
               for rank, (proc, fd) in enumerate(started)]
    for thread in threads:
        thread.start()
    codes = _supervise([proc for proc, _ in started], relay)
    for thread in threads:
        thread.join(timeout=10)
    if all(code == 0 for code in codes):
        return 0
    if relay.requested or EXIT_STOPPED in codes:
        if not progress.stopped:
            emit(Kind.STOPPED, step=progress.step, checkpoint=progress.checkpoint,
                 total_steps=total_steps(recipe, len(job["train"])))
        return EXIT_STOPPED
    for rank, code in enumerate(codes):
        if code != 0:
            emit(Kind.ERROR, kind="WorkerExit", rank=rank,
                 message=f"training worker of rank {rank} exited with status {code}")
    return 1
