"""What every console page shares: navigation bar, error banner, footer, service workers."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input, Static
from textual.worker import Worker, get_current_worker

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.service.jobs import ChildJob, JobOutcome
from appliance.tui.messages import JobDone, JobEvent, JobFailed
from appliance.tui.widgets.banner import Banner

NAV: list[tuple[str, str, str]] = [
    ("1", "overview", "Overview"),
    ("2", "policy", "Policy"),
    ("3", "datasets", "Datasets"),
    ("4", "models", "Models"),
    ("5", "train", "Train"),
    ("6", "artifacts", "Artifacts"),
    ("7", "audit", "Audit"),
    ("8", "try", "Try"),
]
"""(key, mode, label) of every page, in the order the navigation bar shows them."""


def internal_error_line(exc: BaseException) -> str:
    """The one line shown for an unexpected exception (never its traceback)."""
    return (f"internal error: {type(exc).__name__} (run appliance tui --debug to keep the "
            "traceback, and report it)")


class NavBar(Static):
    """`appliance │ 1 Overview 2 Policy ...` with the current page highlighted."""

    def __init__(self, current: str, home: Home) -> None:
        super().__init__(id="nav")
        self.current = current
        self.home = home

    def render(self) -> Text:
        """The page list and the home's path."""
        text = Text.assemble((" appliance ", "bold reverse"), " ")
        for key, mode, label in NAV:
            style = "bold reverse" if mode == self.current else ""
            text.append(f" {key} ", style="bold")
            text.append(f"{label} ", style=style)
        text.append(f"  home {self.home.root}", style="dim")
        return text


class Page(Screen[None]):
    """A console page. Subclasses set MODE and compose their body in `body()`."""

    MODE: ClassVar[str] = ""
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "leave", "Clear message / leave field", show=False),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__()
        self.home = home

    def compose(self) -> ComposeResult:
        """Navigation bar, banner, the page body, footer with key bindings."""
        yield NavBar(self.MODE, self.home)
        yield Banner(id="banner")
        yield from self.body()
        yield Footer()

    def body(self) -> Iterable[Widget]:
        """The page's own widgets."""
        return ()

    @property
    def banner(self) -> Banner:
        """This page's banner."""
        return self.query_one("#banner", Banner)

    def action_leave(self) -> None:
        """Escape clears the message and leaves a text field, so page keys work again."""
        self.banner.clear()
        if isinstance(self.focused, Input):
            self.set_focus(None)

    def run_service(self, job: str, func: Callable[..., Any], *args: Any,
                    **kwargs: Any) -> Worker[None]:
        """Call a service function in a thread worker; the result comes back as JobDone or
        JobFailed. A newer call of the same job supersedes (cancels) an older one."""

        app = self.app
        in_flight: set[str] = getattr(app, "in_flight", set())

        def work() -> None:
            in_flight.add(job)
            try:
                result = func(*args, **kwargs)
            except ApplianceError as exc:
                message: JobDone | JobFailed = JobFailed(job, exc.line())
            except Exception as exc:
                keep = getattr(app, "keep_exception", None)
                if keep is not None:
                    keep(exc)
                message = JobFailed(job, internal_error_line(exc))
            else:
                message = JobDone(job, result)
            finally:
                in_flight.discard(job)
            if not get_current_worker().is_cancelled:
                self.post_message(message)

        return self.run_worker(work, name=job, group=job, thread=True, exclusive=True,
                               exit_on_error=False)

    def run_child(self, job: str, child: ChildJob) -> Worker[None]:
        """Run an `appliance` command as a niced child process (ChildJob) watched from a
        thread worker: each JSON-line event comes back as JobEvent, the end as
        JobDone(job, JobOutcome) when it exits 0, else JobFailed with the command's own
        one-line error. The app cancels children still running when it closes."""
        children: set[ChildJob] = getattr(self.app, "child_jobs", set())

        def watch() -> JobOutcome:
            child.start()
            children.add(child)
            try:
                for event in child.events():
                    self.post_message(JobEvent(job, event))
                outcome = child.wait()
            finally:
                children.discard(child)
            if not outcome.ok:
                raise ApplianceError(outcome.message)
            return outcome

        return self.run_service(job, watch)

    def on_job_event(self, message: JobEvent) -> None:
        """Route a child job's event to `job_event`."""
        self.job_event(message.job, message.event)

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """A child job of this page reported an event."""

    def on_job_done(self, message: JobDone) -> None:
        """Route a finished job to `job_done`."""
        self.job_done(message.job, message.result)

    def on_job_failed(self, message: JobFailed) -> None:
        """Show the failure as one line and let the page reset its state."""
        self.banner.show_error(message.line)
        self.job_failed(message.job, message.line)

    def busy(self) -> str | None:
        """What long work this page has running (a line for the quit question), or None."""
        return None

    def stop_work(self, *, force: bool = False) -> None:
        """The console is closing: stop the page's long work cleanly (force: at once)."""

    def job_done(self, job: str, result: Any) -> None:
        """A service call of this page finished."""

    def job_failed(self, job: str, line: str) -> None:
        """A service call of this page failed (the banner already shows `line`)."""
