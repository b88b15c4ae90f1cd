"""The child-to-parent event channel: JSON lines on a dedicated pipe (not stdout, which
libraries may print to)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

EVENT_FD_ENV = "APPLIANCE_EVENT_FD"
PARENT_PID_ENV = "APPLIANCE_PARENT_PID"  # a child ends at once if its parent is gone


def read_events(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events on a channel's read side, in order; a line that is not a JSON object (a
    torn last write of a killed child) is skipped."""
    for raw in lines:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


class EventWriter:
    """Writes one JSON object per line to a file descriptor, thread-safely."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def emit(self, kind: str, /, **fields: Any) -> None:
        """Send one event of type `kind`."""
        line = (json.dumps({"type": kind, **fields}, sort_keys=True, default=str)
                + "\n").encode("utf-8")
        with self._lock:
            view = memoryview(line)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]


class Kind(StrEnum):
    """Every training event's `type`, one name each (docs/training.md lists their fields).
    A StrEnum: each is the plain string on the wire and compares equal to it."""

    RUN = "run"
    STARTED = "started"
    RESUMED = "resumed"
    EVAL = "eval"
    GENERAL = "general"
    STEP = "step"
    CHECKPOINT = "checkpoint"
    SIGNAL = "signal"
    STOPPED = "stopped"
    GUARD = "guard"
    EARLY_STOP = "early_stop"
    BEST = "best"
    SAVED = "saved"
    GENERATIONS = "generations"
    DONE = "done"
    TRIPWIRE = "tripwire"
    ERROR = "error"
    WORKERS_STARTED = "workers_started"
    """The launcher: every training process of a multi-process run has started."""
    WORKER_FINISHED = "worker_finished"
    """One training process of a multi-process run: its rank's summary at the end."""
    NODES = "nodes"
    """Rank 0 of a cluster run: every node (host key fingerprint, hardware, rank)."""


class EvalEvent(TypedDict, total=False):
    """`eval` (held-out split) or `general` (general text): numbers of one phase."""

    type: str
    phase: str
    """"before", "during" or "after" training."""
    step: int
    loss: float
    perplexity: float
    records: int
    tokens: int


class StoppedEvent(TypedDict, total=False):
    """`stopped`: the run stopped at a step boundary (a cancel)."""

    type: str
    step: int
    total_steps: int
    checkpoint: bool
    """Whether a checkpoint was written at that step."""


class GuardEvent(TypedDict):
    """`guard`: a guard stopped the run (a non-finite or exploding loss or gradient)."""

    type: str
    step: int
    kind: str
    message: str
    value: float


class EarlyStopEvent(TypedDict):
    """`early_stop`: the held-out loss stopped improving."""

    type: str
    step: int
    total_steps: int
    best_step: int
    best_loss: float
    patience: int


class BestEvent(TypedDict):
    """`best`: the step whose adapter is kept."""

    type: str
    step: int
    final_step: int
    loss: float
    evaluations: int
    reason: str


class ErrorEvent(TypedDict, total=False):
    """`error`: the child failed (its exception's class name and one line)."""

    type: str
    kind: str
    message: str
    rank: int


class WorkerFinished(TypedDict, total=False):
    """`worker_finished`, less its type: one rank's summary (the report's `distributed`)."""

    rank: int
    world_size: int
    steps: int
    params_sha256: str
    backend: str
    device: str


class NodeFacts(TypedDict):
    """One node of a run as its provenance records it."""

    node_rank: int
    host_key: str
    """The node's signing key fingerprint."""
    hardware: dict[str, Any]


class TrainJob(TypedDict):
    """What the parent hands the trainer over stdin (JSON): one run, records included.
    Paths are absolute: the sandbox shows the child these paths alone, at the same place."""

    run_id: str
    run_dir: str
    model_dir: str
    recipe: dict[str, Any]
    """The recipe as `Recipe.model_dump()`; the child validates it again."""
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    checkpoint_key: str | None
    """The run's checkpoint key in hex, when the policy encrypts checkpoints."""
    resume: bool
    adapter_out: str
    general: list[str]
    """The general-text paragraphs (for the perplexity gate)."""
    patience: int
    min_delta: float
    inject_nan_at_step: int
    """Test-only (service.train.INJECT_NAN_ENV); 0 otherwise."""
    exit_at_end: NotRequired[list[int]]
    """Test-only (service.train.EXIT_AT_END_ENV): [rank, status] the worker of that rank
    exits with when its work is done, as a crash at exit would."""
    sacred: NotRequired[list[dict[str, Any]]]
    """The recipe's eval-only dataset (`eval.dataset`), when it names one: the numbers
    before and after training are measured on it."""
    fingerprint: NotRequired[dict[str, str]]
    """What every node of a run must agree on (dataset, base model, recipe and policy
    digests), checked by every rank before the first step."""
    node: NotRequired[NodeFacts]
    """This node for the provenance: rank, host key fingerprint, hardware."""
    cluster: NotRequired[dict[str, Any] | None]
    """Several machines: the node's cluster settings (None on one machine)."""
