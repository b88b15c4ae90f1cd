"""Overview: the home, the active policy, keys, the audit log, latest runs, doctor checks.

Everything is read in thread workers; the doctor (about 5 s: it probes torch in an isolated
child process) fills its panel when done, so the page is usable at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.service import overview as ov
from appliance.tui.screens.base import Page


def doctor(home: Home) -> list[Any]:
    """Every readiness check. The policy model (pydantic) is imported here, in the worker,
    not when the console starts: the first page must be usable within a second."""
    from appliance.service.doctor import doctor as run_checks

    return list(run_checks(home))


@dataclass(frozen=True)
class Summary:
    """Everything but the doctor, read in one worker."""

    home: ov.HomeStatus
    policy: tuple[str, str, str] | None
    """(name, digest, source) of the active policy, or None when it does not load."""
    policy_error: str
    keys: list[ov.KeyFile]
    audit: ov.AuditSummary
    runs: list[ov.RunInfo]


def read_summary(home: Home) -> Summary:
    """Read every panel but the doctor (a bad policy file is reported in its panel)."""
    from appliance.service.policy import active_policy

    try:
        active = active_policy(home)
        where = ov.relative_to_home(home, active.path) if active.source == "home" else \
            f"policy/{active.path.name}"
        policy: tuple[str, str, str] | None = (active.name, active.digest,
                                               f"{active.source}: {where}")
        error = ""
    except ApplianceError as exc:
        policy, error = None, exc.line()
    return Summary(ov.home_status(home), policy, error, ov.key_files(home),
                   ov.audit_summary(home), ov.latest_runs(home, limit=5))


def _panel(title: str, widget_id: str) -> Static:
    panel = Static(id=widget_id, classes="panel")
    panel.border_title = title
    return panel


def _home_text(summary: Summary) -> Text:
    text = Text()
    state = ("initialised", "green") if summary.home.initialised else \
        ("not initialised: run appliance init", "yellow")
    text.append("home    ", style="dim").append(summary.home.root + "\n")
    text.append("state   ", style="dim").append(state[0] + "\n", style=state[1])
    if summary.policy is None:
        text.append("policy  ", style="dim").append(summary.policy_error, style="red")
        return text
    name, digest, source = summary.policy
    text.append("policy  ", style="dim").append(name, style="bold").append(f"  ({source})\n")
    text.append("digest  ", style="dim").append(short_digest(digest))
    return text


def short_digest(digest: str) -> str:
    """`sha256:` with the first 16 and last 8 hex digits (the Policy page shows it whole)."""
    algo, _, hexdigits = digest.partition(":")
    return digest if len(hexdigits) <= 27 else f"{algo}:{hexdigits[:16]}…{hexdigits[-8:]}"


def _keys_text(keys: list[ov.KeyFile]) -> Text:
    if not keys:
        return Text("no keys (appliance init creates them)", style="yellow")
    text = Text()
    for key in keys:
        style = "green" if key.kind == "sealed" else "cyan" if key.kind == "public" else ""
        text.append(f"{key.kind:<7} ", style=style).append(key.name + "\n")
    text.rstrip()
    return text


def _audit_text(audit: ov.AuditSummary, chain: str) -> Text:
    if not audit.exists:
        return Text("no audit log yet (appliance init starts it)", style="yellow")
    text = Text()
    text.append("entries ", style="dim").append(f"{audit.entries}\n")
    text.append("chain   ", style="dim").append(chain + "\n")
    for event in audit.last:
        style = "" if event.outcome in ("ok", "") else "yellow"
        text.append(f"#{event.line:<5}", style="dim").append(f" {event.action}", style=style)
        text.append(f" {event.outcome}\n", style=style or "dim")
    text.rstrip()
    return text


def _runs_text(runs: list[ov.RunInfo]) -> Text:
    if not runs:
        return Text("no training runs yet", style="dim")
    text = Text()
    for run in runs:
        mark = ("signed", "green") if run.signed else ("unsigned", "yellow")
        text.append(f"{run.run_id}  ").append(run.modified, style="dim")
        text.append(f"  {mark[0]}\n", style=mark[1])
    text.rstrip()
    return text


def _doctor_view(checks: list[Any]) -> Group:
    """Mark, name and detail per check (details wrap in their column), then the verdict."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True, style="bold")
    grid.add_column(ratio=1)
    for check in checks:
        mark = ("✓", "green") if check.ok else ("✗", "red") if check.required else ("!", "yellow")
        grid.add_row(Text(mark[0], style=mark[1]), check.name, check.detail)
    ready = all(c.ok for c in checks if c.required)
    verdict = Text("ready" if ready else "NOT READY: fix the ✗ lines",
                   style="green" if ready else "bold red")
    return Group(grid, verdict)


class OverviewScreen(Page):
    """The first page: is this machine and home ready, and what happened lately."""

    MODE = "overview"
    AUTO_FOCUS = "#overview"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("r", "refresh", "Refresh"),
        Binding("d", "doctor", "Re-run doctor"),
    ]

    def body(self) -> Iterable[Widget]:
        """Two columns: home, keys and runs on the left; doctor and audit log on the right."""
        with VerticalScroll(id="overview"), Horizontal(id="overview-cols"):
            with Vertical(classes="column"):
                yield _panel("Home and policy", "home-panel")
                yield _panel("Keys", "keys-panel")
                yield _panel("Latest runs", "runs-panel")
            with Vertical(classes="column"):
                yield _panel("Doctor", "doctor-panel")
                yield _panel("Audit log", "audit-panel")

    def on_mount(self) -> None:
        """Start the doctor once the first frame is painted (it has its own worker)."""
        self.call_after_refresh(self.action_doctor)

    def on_screen_resume(self) -> None:
        """Re-read the panels whenever the page is shown (first time included), so the audit
        count and chain status are current after visiting other pages."""
        self.call_after_refresh(self.action_refresh)

    def action_refresh(self) -> None:
        """Re-read home, policy, keys, audit log and runs."""
        for panel in ("#home-panel", "#keys-panel", "#audit-panel", "#runs-panel"):
            self.query_one(panel).loading = True
        self.run_service("summary", read_summary, self.home)

    def action_doctor(self) -> None:
        """Run every readiness check again."""
        self.query_one("#doctor-panel").loading = True
        self.run_service("doctor", doctor, self.home)

    def job_done(self, job: str, result: Any) -> None:
        """Fill the panels."""
        if job == "doctor":
            self._fill("#doctor-panel", _doctor_view(result))
        elif job == "summary":
            self._fill("#home-panel", _home_text(result))
            self._fill("#keys-panel", _keys_text(result.keys))
            chain = getattr(self.app, "chain_status", "")
            self._fill("#audit-panel", _audit_text(result.audit, chain))
            self._fill("#runs-panel", _runs_text(result.runs))

    def job_failed(self, job: str, line: str) -> None:  # noqa: ARG002 - overrides Page's
        """Stop the loading indicators of the failed job's panels."""
        panels = ["#doctor-panel"] if job == "doctor" else \
            ["#home-panel", "#keys-panel", "#audit-panel", "#runs-panel"]
        for panel in panels:
            self._fill(panel, Text("could not be read (see the message above)", style="red"))

    def _fill(self, selector: str, text: Text | Group) -> None:
        panel = self.query_one(selector, Static)
        panel.loading = False
        panel.update(text)
