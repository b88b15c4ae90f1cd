"""The console application: pages as modes, switched with number keys; help on `?`."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
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
from appliance.tui.screens.train import TrainScreen
from appliance.tui.screens.tryout import TryScreen
from appliance.tui.widgets.dialogs import ConfirmModal

PAGES: dict[str, type[Page]] = {
    "overview": OverviewScreen,
    "policy": PolicyScreen,
    "datasets": DatasetsScreen,
    "models": ModelsScreen,
    "train": TrainScreen,
    "artifacts": ArtifactsScreen,
    "audit": AuditScreen,
    "try": TryScreen,
}
"""mode -> page class; NAV gives their keys and order."""

SWITCH_INTERVAL_S = 0.0002
"""How long a thread may hold the GIL before another may run (CPython's default is 5 ms).
The event loop needs the GIL dozens of times to handle one key; with the default, a worker
computing in pure Python stretches that past 100 ms, with 0.2 ms it stays well under (see
docs/benchmarks.md, "tui"). Heavy work (scrubbing, training) belongs in child processes."""

QUIT_GRACE_S = 300.0
"""After the operator confirms quitting during a run, how long the console waits for the run
to stop cleanly (checkpoint at the next step boundary, audited cancellation) before it stops
the child's process group at once. Only a hung trainer gets there; checkpoints are written
atomically, so even then the run resumes from its newest one."""


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
        self.pages: dict[str, Page] = {}
        """The pages created so far (a page is created when first shown)."""
        self.quitting_since: float | None = None
        for mode, page in PAGES.items():
            self.add_mode(mode, self._page_factory(mode, page))

    def _page_factory(self, mode: str, page: type[Page]) -> Callable[[], Page]:
        def make() -> Page:
            self.pages[mode] = created = page(self.home)
            return created

        return make

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

    def busy(self) -> list[str]:
        """Long work still running on any page (a training run), one line each."""
        return [line for page in self.pages.values() if (line := page.busy())]

    async def action_quit(self) -> None:
        """Quit; while a run is in progress, ask first, then stop it cleanly and close once
        it has stopped (the run keeps its checkpoint and can be resumed)."""
        busy = self.busy()
        if not busy:
            self.exit()
            return
        if self.quitting_since is not None:
            self.notify("stopping the run cleanly; the console closes when it has stopped")
            return
        question = ("; ".join(busy).capitalize() + ".\n\nStop it and quit? It stops at the "
                    "next step boundary and saves a checkpoint (Train page, R resumes it); "
                    "the console closes once it has stopped.")
        self.push_screen(ConfirmModal(question, yes="Stop the run and quit", no="Keep running",
                                      variant="warning"),
                         self._quit_answered)

    def _quit_answered(self, yes: bool | None) -> None:
        if not yes:
            return
        self.quitting_since = time.monotonic()
        for page in self.pages.values():
            page.stop_work()
        self.set_interval(0.2, self._exit_when_stopped)

    def _exit_when_stopped(self) -> None:
        if not self.busy():
            self.exit()
        elif self.quitting_since is not None and \
                time.monotonic() - self.quitting_since > QUIT_GRACE_S:
            for page in self.pages.values():
                page.stop_work(force=True)

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
