"""What the training loop watches besides the clock: guards that stop a run at once when
training goes wrong (a NaN or infinite loss or gradient, a loss spike, exploding
gradients), and early stopping on the held-out loss. Plain Python (no torch), so the rules
are tested on their own; the trainer feeds them floats."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from appliance.train.recipe import GuardSettings


@dataclass(frozen=True)
class Trip:
    """Why a guard stopped the run: a short kind for the audit log and one line for people."""

    kind: str
    message: str
    value: float


class Guard:
    """Checks each optimizer step's loss and pre-clipping gradient norm."""

    def __init__(self, settings: GuardSettings) -> None:
        self.settings = settings
        self.recent: deque[float] = deque(maxlen=settings.spike_window)

    def check(self, loss: float, grad_norm: float) -> Trip | None:
        """The trip of this step, or None (then the loss joins the spike window)."""
        limits = self.settings
        if not math.isfinite(loss):
            return Trip("non_finite_loss", f"the training loss is {loss}", loss)
        if not math.isfinite(grad_norm):
            return Trip("non_finite_gradient", f"the gradient norm is {grad_norm}", grad_norm)
        if limits.max_grad_norm and grad_norm > limits.max_grad_norm:
            return Trip("exploding_gradient",
                        f"the gradient norm {grad_norm:.4g} is over guards.max_grad_norm = "
                        f"{limits.max_grad_norm}", grad_norm)
        if limits.loss_spike_factor and len(self.recent) == self.recent.maxlen:
            mean = sum(self.recent) / len(self.recent)
            if loss > limits.loss_spike_factor * mean:
                return Trip("loss_spike",
                            f"the training loss {loss:.4f} is over guards.loss_spike_factor = "
                            f"{limits.loss_spike_factor} x the mean {mean:.4f} of the last "
                            f"{len(self.recent)} steps", loss)
        self.recent.append(loss)
        return None


@dataclass
class EarlyStop:
    """The best held-out loss seen during training, and evaluations since it improved."""

    patience: int
    min_delta: float = 0.0
    best_step: int | None = None
    best_loss: float = math.inf
    since_best: int = 0
    history: list[tuple[int, float]] = field(default_factory=list)

    def update(self, step: int, loss: float) -> bool:
        """Record the evaluation at `step`; True when it is the new best."""
        self.history.append((step, loss))
        if loss < self.best_loss - self.min_delta or self.best_step is None:
            self.best_step, self.best_loss, self.since_best = step, loss, 0
            return True
        self.since_best += 1
        return False

    @property
    def exhausted(self) -> bool:
        """No improvement for `patience` evaluations in a row."""
        return self.since_best >= self.patience

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps (JSON)."""
        return {"best_step": self.best_step, "best_loss": self.best_loss,
                "since_best": self.since_best, "history": self.history}

    def load(self, state: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's state."""
        if state:
            self.best_step = state.get("best_step")
            self.best_loss = float(state.get("best_loss", math.inf))
            self.since_best = int(state.get("since_best", 0))
            self.history = [(int(s), float(v)) for s, v in state.get("history", [])]
