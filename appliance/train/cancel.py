"""Cancelling a training run with SIGINT/SIGTERM, at any moment, without races.

Up to three kinds of process take part: the appliance (the parent), the isolated child (a
trainer, or the launcher of N trainer workers) and the workers. The rules:

- A signal handler only records the request: no lock, no I/O. (A handler that wrote the
  `signal` event while the code it interrupted held the event writer's lock deadlocked the
  trainer for good; that was the hang of the SIGTERM checkpoint test.)
- A process signals only its own children, and a child only once it has said it is ready
  (its `started` event, sent after its handlers are installed): SIGTERM to `unshare` before
  it exec'd Python, or to a Python that has not installed its handler yet, would kill it
  outright. Children run in their own session, so a terminal's Ctrl-C reaches the parent
  alone, which forwards it.
- A trainer that has not completed a step since it started ends at once (there is nothing
  to save: model loading and the first evaluation can take minutes on a big model); after
  that it stops at the next step boundary with a checkpoint.
- A second signal to the parent kills the child's process group (SIGKILL); the last
  checkpoint stays valid, because checkpoints are written atomically.

`Relay` is the parent's (and the launcher's) side; `StopFlag` the trainer's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from appliance.train.events import Kind

SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_STOPPED = 3

Emit = Callable[..., None]


class Relay:
    """Records SIGINT/SIGTERM and passes them on as SIGTERM to every ready child (to the
    child alone); a second signal kills the children (their whole process groups when
    `group`)."""

    def __init__(self) -> None:
        self.requests = 0
        self._ready: dict[int, bool] = {}
        self._group: dict[int, bool] = {}
        self._sent: set[int] = set()
        self._old: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """True once a cancel was asked for."""
        return self.requests > 0

    def install(self) -> bool:
        """Take over SIGINT/SIGTERM (main thread only; elsewhere returns False and the
        caller's own handling stays)."""
        if threading.current_thread() is not threading.main_thread():
            return False
        self._old = {int(s): signal.signal(s, self._on_signal) for s in SIGNALS}
        return True

    def restore(self) -> None:
        """Give SIGINT/SIGTERM back to the handlers that were there before."""
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old = {}

    @contextlib.contextmanager
    def suspended(self) -> Iterator[None]:
        """The previous handlers for the block (an interactive prompt, where Ctrl-C must
        interrupt at once); a request recorded before stays recorded."""
        if not self._old:
            yield
            return
        mine = {s: signal.signal(s, h) for s, h in self._old.items()}
        try:
            yield
        finally:
            for signum, handler in mine.items():
                signal.signal(signum, handler)

    def attach(self, pid: int, *, group: bool = False) -> None:
        """A child that will be told (once ready)."""
        self._group[pid] = group
        self._ready[pid] = False

    def ready(self, pid: int) -> None:
        """The child has installed its handlers: it may be signalled now."""
        if pid in self._ready:
            self._ready[pid] = True
            self._deliver()

    def detach(self, pid: int) -> None:
        """Forget a child (before reaping it, so its pid can never be reused under us)."""
        self._ready.pop(pid, None)

    def kill_all(self) -> None:
        """SIGKILL every attached child (a worker failed, or a second signal)."""
        for pid in list(self._ready):
            self._kill(pid, signal.SIGKILL)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:  # noqa: ARG002
        # signal.signal's handler signature
        self.requests += 1
        self._deliver()

    def _deliver(self) -> None:
        if self.requests >= 2:
            self.kill_all()
            return
        if self.requests:
            for pid, ready in list(self._ready.items()):
                if ready and pid not in self._sent:
                    self._sent.add(pid)
                    self._kill(pid, signal.SIGTERM)

    def _kill(self, pid: int, signum: int) -> None:
        # SIGTERM to the child alone (it passes it on to its own children once they are
        # ready); SIGKILL to its whole group when it leads one.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if signum == signal.SIGKILL and self._group.get(pid):
                os.killpg(pid, signum)
            else:
                os.kill(pid, signum)


def _plain_signals() -> None:
    """In a process forked from the trainer (a multiprocessing worker of the scrubber, a
    data loader): default SIGINT/SIGTERM and no wakeup fd, else the worker's SIGTERM from
    its pool's teardown would be written into the inherited pipe and read by the trainer's
    watcher as a stop request."""
    signal.set_wakeup_fd(-1)
    for signum in SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


class StopFlag:
    """The trainer's side: a watcher thread, woken at once through `signal.set_wakeup_fd`
    (even while the main thread is inside a long C call such as loading weights), reports
    SIGINT/SIGTERM as a `signal` event and sets the flag the loop reads at step boundaries;
    while no step has been completed in this process, it ends the process immediately with
    a `stopped` event (`checkpoint: false`)."""

    def __init__(self, emit: Emit) -> None:
        self.emit = emit
        self.requested = False
        self.step = 0
        self.total: int | None = None
        self._progress = False
        self._ended = False
        self._lock = threading.Lock()

    def install(self) -> None:
        """Handlers and the watcher; call first thing, from the main thread."""
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for signum in SIGNALS:
            signal.signal(signum, self._on_signal)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        os.register_at_fork(after_in_child=_plain_signals)
        threading.Thread(target=self._watch, args=(read_fd,), name="stop-watcher",
                         daemon=True).start()

    def position(self, step: int, total: int) -> None:
        """Where the run starts (reported if it ends before its first step)."""
        self.step, self.total = step, total

    def progressed(self) -> None:
        """A step was completed: from now on a stop waits for the step boundary."""
        with self._lock:
            self._progress = True

    def end_before_first_step(self) -> bool:
        """Report `stopped` for a run that completed no step, exactly once; True when this
        call reported it (the caller then exits with EXIT_STOPPED)."""
        with self._lock:
            if self._progress or self._ended:
                return False
            self._ended = True
            self.emit(Kind.STOPPED, step=self.step, total_steps=self.total, checkpoint=False,
                      before_first_step=True)
            return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        """Nothing to do here (see the module docstring): installing a Python handler is
        what makes the interpreter write the signal number to the wakeup fd."""

    def _watch(self, read_fd: int) -> None:
        while data := os.read(read_fd, 64):
            for signum in data:
                if signum not in SIGNALS:
                    continue
                self.emit(Kind.SIGNAL, signal=signal.Signals(signum).name)
                self.requested = True  # after the event: `signal` always precedes `stopped`
                if self.end_before_first_step():
                    os._exit(EXIT_STOPPED)
