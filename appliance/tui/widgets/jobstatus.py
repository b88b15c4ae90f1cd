"""One line saying what a child job is doing and for how long."""

from __future__ import annotations

import time

from rich.text import Text
from textual.timer import Timer
from textual.widgets import Static

SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class JobStatus(Static):
    """`⠹ importing model x… 12 s` while a job runs; the outcome after; hidden when idle."""

    DEFAULT_CSS = """
    JobStatus { display: none; height: auto; padding: 0 1; }
    JobStatus.-shown { display: block; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.what = ""
        self.started = 0.0
        self.ticks = 0
        self._timer: Timer | None = None

    @property
    def running(self) -> bool:
        """True between `start` and `finish`."""
        return self._timer is not None

    def start(self, what: str) -> None:
        """Show `what` with a spinner and the seconds since now."""
        self.what, self.started, self.ticks = what, time.monotonic(), 0
        self.add_class("-shown")
        if self._timer is None:
            self._timer = self.set_interval(0.5, self._tick)
        self._tick()

    def note(self, what: str) -> None:
        """Change the running job's description (a new stage)."""
        self.what = what
        self._tick()

    def finish(self, line: str, *, ok: bool) -> None:
        """Stop the clock and show how it ended."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        elapsed = time.monotonic() - self.started
        self.update(Text.assemble(("✓ " if ok else "✗ ", "bold green" if ok else "bold red"),
                                  line, (f"  ({elapsed:.0f} s)", "dim")))

    def _tick(self) -> None:
        self.ticks += 1
        elapsed = time.monotonic() - self.started
        self.update(Text.assemble((SPINNER[self.ticks % len(SPINNER)] + " ", "bold"),
                                  self.what, (f"  {elapsed:.0f} s", "dim")))
