"""The console application: pages as modes, switched with number keys; help on `?`."""

from __future__ import annotations

import sys
from functools import partial
from typing import ClassVar

from textual.app import App
from textual.binding import Binding

from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.tui.screens.artifacts import ArtifactsScreen
from appliance.tui.screens.audit import AuditScreen
from appliance.tui.screens.base import NAV, Page
from appliance.tui.screens.datasets import DatasetsScreen
from appliance.tui.screens.help import HelpScreen
from appliance.tui.screens.models import ModelsScreen
from appliance.tui.screens.overview import OverviewScreen
from appliance.tui.screens.policy import PolicyScreen

PAGES: dict[str, type[Page]] = {
    "overview": OverviewScreen,
    "policy": PolicyScreen,
    "datasets": DatasetsScreen,
    "models": ModelsScreen,
    "artifacts": ArtifactsScreen,
    "audit": AuditScreen,
}
"""mode -> page class; NAV gives their keys and order."""

SWITCH_INTERVAL_S = 0.0002
"""How long a thread may hold the GIL before another may run (CPython's default is 5 ms).
The event loop needs the GIL dozens of times to handle one key; with the default, a worker
computing in pure Python stretches that past 100 ms, with 0.2 ms it stays well under (see
docs/benchmarks.md, "tui"). Heavy work (scrubbing, training) belongs in child processes."""


class ApplianceConsole(App[int]):
    """`appliance tui`: the keyboard-first operator console over the service layer."""

    CSS_PATH = "app.tcss"
    TITLE = "appliance"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *(Binding(key, f"page('{mode}')", label, show=False) for key, mode, label in NAV),
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, home: Home, *, start: str = "overview", debug: bool = False) -> None:
        super().__init__()
        self.home = home
        self.start = start
        self.debug_errors = debug
        self.kept: list[BaseException] = []
        self.pending: list[str] = []
        self.in_flight: set[str] = set()
        """Service calls running now (worker threads add and remove their job's name)."""
        self.chain_status = "not verified this session (Audit page: v)"
        self.child_jobs: set[ChildJob] = set()
        """Child processes (imports, exports, checks) running now; cancelled on exit."""
        for mode, page in PAGES.items():
            self.add_mode(mode, partial(page, home))

    def on_mount(self) -> None:
        """Open the first page; favour the UI thread when a worker computes."""
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.switch_mode(self.start)

    def on_unmount(self) -> None:
        """Give the interpreter its switch interval back; note service calls still running
        (their threads finish before the process exits: none is abandoned midway); ask
        child processes still running to stop (SIGTERM)."""
        sys.setswitchinterval(getattr(self, "_switch_interval", sys.getswitchinterval()))
        self.pending = sorted(self.in_flight)
        for child in list(self.child_jobs):
            child.cancel()

    def action_page(self, mode: str) -> None:
        """Switch to a page (each keeps its state while hidden)."""
        self.switch_mode(mode)

    def action_help(self) -> None:
        """Show every key."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def keep_exception(self, exc: BaseException) -> None:
        """With --debug, unexpected worker exceptions are kept to print after exit."""
        if self.debug_errors:
            self.kept.append(exc)
