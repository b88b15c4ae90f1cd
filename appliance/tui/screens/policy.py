"""Policy: the active policy, readable, with its digest; a diff against another file."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from appliance.errors import PolicyError
from appliance.home import Home
from appliance.service.overview import relative_to_home
from appliance.tui.screens.base import Page
from appliance.tui.widgets.records import set_rows

if TYPE_CHECKING:
    from appliance.service.policy import ActivePolicy, PolicyChange

DIFF_COLUMNS = ("key", "active", "other")


def load_active(home: Home) -> tuple[ActivePolicy, list[Any]]:
    """The active policy and its described settings. (The policy service, and with it
    pydantic, is imported in the worker so that it does not delay start-up.)"""
    from appliance.service.policy import active_policy, describe_policy

    active = active_policy(home)
    return active, describe_policy(active.policy)


def compare(home: Home, other: str) -> tuple[str, list[PolicyChange] | list[str]]:
    """('ok', changes) against the active policy, or ('invalid', problems) for a file that
    is not a valid policy; a file that cannot be read raises (one line in the banner)."""
    from appliance.service.policy import active_policy, diff_policies, read_policy

    try:
        policy = read_policy(other)
    except PolicyError as exc:
        if not exc.problems:
            raise
        return "invalid", exc.problems
    return "ok", diff_policies(active_policy(home).policy, policy)


def _source(home: Home, active: ActivePolicy) -> str:
    if active.source == "home":
        return f"home: {relative_to_home(home, active.path)}"
    return f"shipped default: policy/{active.path.name}"


def _policy_view(entries: list[Any]) -> Group:
    """One table per section: the key, then its value with the field's docstring dimmed
    beneath it; long values wrap inside their column."""
    parts: list[Any] = []
    sections: dict[str, list[Any]] = {}
    for entry in entries:
        sections.setdefault(entry.key.partition(".")[0], []).append(entry)
    for section, items in sections.items():
        parts.append(Text(f"[{section}]", style="bold cyan"))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True, style="bold")
        grid.add_column(ratio=1)
        for entry in items:
            value = Text(entry.value)
            if entry.doc:
                value.append("\n" + " ".join(entry.doc.split()), style="dim")
            grid.add_row(f"  {entry.key.partition('.')[2]}", value)
        parts.extend([grid, Text("")])
    return Group(*parts[:-1])


class PolicyScreen(Page):
    """The policy in force and how another policy file would change it."""

    MODE = "policy"
    AUTO_FOCUS = "#policy-view"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("c", "focus_compare", "Compare with file"),
        Binding("r", "refresh", "Reload"),
    ]

    def body(self) -> Iterable[Widget]:
        """Header line; the policy on the left, the diff on the right."""
        yield Static(id="policy-head", classes="head")
        with Horizontal(id="policy-split"):
            with VerticalScroll(id="policy-view", classes="panel") as view:
                view.border_title = "Effective policy (defaults filled in)"
                yield Static(id="policy-text")
            with Vertical(id="policy-diff", classes="panel") as diff:
                diff.border_title = "Compare with another policy file"
                yield Input(placeholder="path to a policy .toml, then Enter", id="compare")
                yield Static("", id="diff-summary")
                yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        """Load the active policy in a worker."""
        set_rows(self.query_one("#diff-table", DataTable), DIFF_COLUMNS, [])
        self.action_refresh()

    def action_refresh(self) -> None:
        """Re-read the active policy."""
        self.query_one("#policy-view").loading = True
        self.run_service("load", load_active, self.home)

    def action_focus_compare(self) -> None:
        """Move the cursor to the path field."""
        self.query_one("#compare", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Diff the active policy against the file named in the path field."""
        path = event.value.strip()
        if path:
            self.query_one("#policy-diff").loading = True
            self.run_service("diff", compare, self.home, path)

    def job_done(self, job: str, result: Any) -> None:
        """Show the policy, or the diff."""
        if job == "load":
            active, entries = result
            head = Text.assemble(("policy ", "dim"), (active.name, "bold"),
                                 ("   from ", "dim"), _source(self.home, active),
                                 ("\ndigest ", "dim"), active.digest)
            self.query_one("#policy-head", Static).update(head)
            self.query_one("#policy-text", Static).update(_policy_view(entries))
            self.query_one("#policy-view").loading = False
        elif job == "diff":
            self._show_diff(*result)

    def job_failed(self, job: str, line: str) -> None:  # noqa: ARG002 - overrides Page's
        """Stop the loading indicator."""
        self.query_one("#policy-view" if job == "load" else "#policy-diff").loading = False

    def _show_diff(self, status: str, items: list[Any]) -> None:
        self.query_one("#policy-diff").loading = False
        table = self.query_one("#diff-table", DataTable)
        summary = self.query_one("#diff-summary", Static)
        if status == "invalid":
            summary.update(Text(f"not a valid policy: {len(items)} problem(s)", style="red"))
            set_rows(table, ["problem"], [[Text(problem, style="red")] for problem in items])
            return
        self.banner.clear()
        if not items:
            summary.update(Text("no differences: the effective policies are identical",
                                style="green"))
        else:
            summary.update(Text(f"{len(items)} setting(s) differ (active -> other)",
                                style="bold"))
        set_rows(table, DIFF_COLUMNS, [[c.key, Text(c.old, style="red"),
                                        Text(c.new, style="green")] for c in items])
