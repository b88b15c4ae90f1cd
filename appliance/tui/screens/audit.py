"""Audit: browse events newest first (as stored, already redacted), verify the chain, export
the auditor's bundle."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Static

from appliance.service.audit import export_bundle, verify_home
from appliance.service.audit_view import EventPage, read_events
from appliance.tui.screens.base import Page
from appliance.tui.widgets.passphrase import PassphraseModal, PathModal
from appliance.tui.widgets.records import set_rows

EVENT_COLUMNS = ("#", "time", "action", "outcome", "details")


def chain_line(report: dict[str, Any]) -> str:
    """One line for a verification report."""
    covered = report.get("covered")
    entries = report.get("entries")
    counts = f" ({covered} of {entries} entries covered by signed checkpoints)" \
        if covered is not None and entries is not None else ""
    verdict = "intact" if report.get("ok") else "NOT intact"
    reason = report.get("reason") or ""
    return f"{verdict}{counts}" + (f": {reason}" if reason and not report.get("ok") else "")


class AuditScreen(Page):
    """The audit log, for operators and auditors."""

    MODE = "audit"
    AUTO_FOCUS = "#events"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("slash", "focus_filter", "Filter"),
        Binding("v", "verify", "Verify chain"),
        Binding("e", "export", "Export bundle"),
        Binding("r", "refresh", "Reload"),
    ]

    def body(self) -> Iterable[Widget]:
        """Filter, counts and chain status, the event table, the action buttons."""
        yield Input(placeholder="filter: words, or action=… outcome=… key=value  (/)",
                    id="filter")
        yield Static("", id="audit-status", classes="head")
        yield DataTable(id="events", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="audit-actions"):
            yield Button("Verify chain (v)", id="verify")
            yield Button("Export bundle (e)", id="export")
            yield Button("Reload (r)", id="reload")

    def on_mount(self) -> None:
        """Columns, then the first read."""
        set_rows(self.query_one("#events", DataTable), EVENT_COLUMNS, [])
        self.action_refresh()

    def action_refresh(self) -> None:
        """Re-read the log with the current filter."""
        self.query_one("#events").loading = True
        self.run_service("events", read_events, self.home,
                         self.query_one("#filter", Input).value)

    def action_focus_filter(self) -> None:
        """Move the cursor to the filter."""
        self.query_one("#filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Filter as the operator types (a newer read supersedes an older one)."""
        if event.input.id == "filter":
            self.action_refresh()

    def on_input_submitted(self, event: Input.Submitted) -> None:  # noqa: ARG002 - Textual handler
        """Enter moves to the table."""
        self.query_one("#events", DataTable).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """The three buttons."""
        actions = {"verify": self.action_verify, "export": self.action_export,
                   "reload": self.action_refresh}
        actions[event.button.id or "reload"]()

    def action_verify(self) -> None:
        """Verify the chain against its signed checkpoints."""
        self.banner.show_info("verifying the audit chain…")
        self.run_service("verify", verify_home, self.home)

    def action_export(self) -> None:
        """Ask where, then (optionally) for the passphrase, then export."""
        self.app.push_screen(PathModal("Export the auditor's bundle to a new directory:"),
                             self._export_to)

    def _export_to(self, out: str | None) -> None:
        if not out:
            return

        def with_passphrase(secret: bytes | None) -> None:
            if secret is None:  # Escape: no export
                return
            self.banner.show_info(f"exporting the audit bundle to {out}…")
            self.run_service("export", export_bundle, self.home, out, secret or None)

        self.app.push_screen(PassphraseModal(
            "Passphrase, to sign a checkpoint over the newest entries first "
            "(Enter with nothing to skip):", allow_empty=True), with_passphrase)

    def job_done(self, job: str, result: Any) -> None:
        """Fill the table, or report a verification or export."""
        if job == "events":
            self._show_events(result)
        elif job == "verify":
            line = chain_line(result)
            self.app.chain_status = line  # type: ignore[attr-defined]
            if result.get("ok"):
                self.banner.show_info(f"audit chain {line}")
            else:
                self.banner.show_error(f"audit chain {line}")
            self._update_status()
            self.action_refresh()  # verification itself is recorded in the log
        elif job == "export":
            entries = result.get("entries", "?")
            self.banner.show_info(f"bundle written ({entries} entries); check it elsewhere "
                                  "with appliance audit verify --bundle DIR")
            self.action_refresh()

    def job_failed(self, job: str, line: str) -> None:  # noqa: ARG002 - overrides Page's
        """Stop the table's loading indicator."""
        if job == "events":
            self.query_one("#events").loading = False

    def _show_events(self, page: EventPage) -> None:
        table = self.query_one("#events", DataTable)
        table.loading = False
        rows: list[list[str | Text]] = []
        for event in page.events:
            style = "red" if not event.readable else \
                "" if event.outcome in ("ok", "") else "yellow"
            rows.append([str(event.line), event.time, Text(event.action, style=style),
                         Text(event.outcome, style=style), event.details()])
        set_rows(table, EVENT_COLUMNS, rows)
        self._page = page
        self._update_status()

    def _update_status(self) -> None:
        page: EventPage | None = getattr(self, "_page", None)
        text = Text()
        if page is not None:
            shown = len(page.events)
            text.append(f"{page.total} entries", style="bold")
            if page.matched != page.total:
                text.append(f", {page.matched} match the filter")
            if shown < page.matched:
                text.append(f", newest {shown} shown")
        text.append("   chain: ", style="dim").append(getattr(self.app, "chain_status", ""))
        self.query_one("#audit-status", Static).update(text)
