"""A run's progress, folded from `appliance train --json-events` events.

The events (appliance.train.trainer, appliance.service.train): `run` (run id, total steps,
resumed or not), `started` (the isolated child is up), `eval` (phase before/after: loss,
perplexity, records), `resumed` (step), `step` (step, total_steps, loss, lr, tokens_per_s,
eta_s), `checkpoint` (step), `signal` (a stop was asked for), `stopped` (step), `tripwire`
(a blocked network attempt or a spawned process), `saved`, `generations`, `error`, `done`:
the members of `appliance.train.events.Kind`, which the folding compares against.
`TrainProgress` keeps numbers only: sample generations and anything else that could hold
record text are dropped, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypedDict

from appliance.train import events

Kind = events.Kind
"""The training events' types (the console compares against them through here)."""



class HistoryPoint(TypedDict, total=False):
    """The numbers of one `step` or `eval` line of a run's metrics.jsonl
    (`training_jobs.run_history`), what the Train page's curves continue from on resume."""

    type: str
    phase: str
    step: int
    total_steps: int
    loss: float
    perplexity: float
    lr: float
    tokens_per_s: float


STOPPING = "stopping at the next step boundary (a checkpoint is saved)"


@dataclass
class TrainProgress:
    """The state of one run as the console shows it.

    phase: starting -> training -> evaluating -> finishing -> done, or -> stopping ->
    stopped, or failed (set by the console from the job's exit)."""

    run_id: str = ""
    phase: str = "starting"
    detail: str = "checking the recipe, unlocking the vault, starting the isolated trainer"
    step: int = 0
    total_steps: int = 0
    loss_by_step: dict[int, float] = field(default_factory=dict)
    lr: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    eval_before: dict[str, float] = field(default_factory=dict)
    eval_after: dict[str, float] = field(default_factory=dict)
    eval_during: dict[int, dict[str, float]] = field(default_factory=dict)
    """Held-out evaluations during training (recipe eval.every), by step."""
    checkpoints: list[int] = field(default_factory=list)
    blocked: int = 0
    """Tripwire reports (the namespace stopped a network attempt, or a process spawned)."""
    stop_requested: bool = False

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event into the state (unknown types are ignored)."""
        kind = event.get("type")
        if kind == Kind.RUN:
            self.run_id = str(event.get("run_id", ""))
            self.total_steps = int(event.get("total_steps", 0))
        elif kind == Kind.STARTED:
            self._to("starting", "loading the base model in the isolated trainer")
        elif kind == Kind.EVAL:
            self._eval(event)
        elif kind == Kind.RESUMED:
            self.step = int(event.get("step", 0))
            self.total_steps = int(event.get("total_steps", self.total_steps))
            self._to("training", f"resumed at step {self.step}")
        elif kind == Kind.STEP:
            self._step(event)
        elif kind == Kind.CHECKPOINT:
            self.checkpoints.append(int(event.get("step", 0)))
        elif kind == Kind.SIGNAL:
            self.request_stop()
        elif kind == Kind.STOPPED:
            self.step = int(event.get("step", self.step))
            self.phase, self.detail = "stopped", f"stopped at step {self.step}; checkpoint saved"
        elif kind == Kind.TRIPWIRE:
            self.blocked += 1
        elif kind == Kind.SAVED:
            self.phase, self.detail = "evaluating", "held-out eval after training"
        elif kind == Kind.DONE:
            self.phase, self.detail = "finishing", "signing the artifact"

    def preload(self, history: list[HistoryPoint]) -> None:
        """Curves recorded before a resume (`training_jobs.run_history`): losses and the
        eval before training; the phase stays as it is."""
        for event in history:
            if event.get("type") == Kind.STEP:
                self.loss_by_step[int(event["step"])] = float(event.get("loss", 0.0))
                self.total_steps = int(event.get("total_steps", self.total_steps))
            elif event.get("type") == Kind.EVAL and event.get("phase") == "before":
                self.eval_before = _eval_values(event)

    def request_stop(self) -> None:
        """A stop was asked for: the trainer checkpoints at the next step boundary."""
        self.stop_requested = True
        if self.phase in ("starting", "training"):
            self.phase, self.detail = "stopping", STOPPING

    def _to(self, phase: str, detail: str) -> None:
        if self.stop_requested:
            return
        self.phase, self.detail = phase, detail

    def _eval(self, event: dict[str, Any]) -> None:
        values = _eval_values(event)
        if event.get("phase") == "before":
            self.eval_before = values
            self._to("training", "first step under way")
        elif event.get("phase") == "during":
            self.eval_during[int(event.get("step", 0))] = values
        else:
            self.eval_after = values

    def _step(self, event: dict[str, Any]) -> None:
        self.step = int(event.get("step", self.step))
        self.total_steps = int(event.get("total_steps", self.total_steps))
        self.loss_by_step[self.step] = float(event.get("loss", 0.0))
        self.lr = float(event.get("lr", 0.0))
        self.tokens_per_s = float(event.get("tokens_per_s", 0.0))
        self.eta_s = float(event["eta_s"]) if "eta_s" in event else None
        self._to("training", f"step {self.step} of {self.total_steps}")

    @property
    def losses(self) -> list[float]:
        """Training loss by step, in step order."""
        return [self.loss_by_step[s] for s in sorted(self.loss_by_step)]

    @property
    def eval_losses(self) -> list[float]:
        """Held-out loss before training, during it, then after (as far as measured)."""
        during = [self.eval_during[s] for s in sorted(self.eval_during)]
        return [v["loss"] for v in (self.eval_before, *during, self.eval_after) if "loss" in v]

    @property
    def cancellable(self) -> bool:
        """True while a stop request still means "checkpoint at the next step boundary":
        not once asked, and not once the loop is over (the child only evaluates and signs
        then)."""
        return self.phase in ("starting", "training")


def _eval_values(event: Mapping[str, Any]) -> dict[str, float]:
    return {key: float(event[key]) for key in ("loss", "perplexity") if key in event}


def eta_text(seconds: float | None) -> str:
    """`4m05s`, `1h02m`, or `-`."""
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
