"""What the Datasets, Models and Artifacts pages share: a count line, a table of what the
vault, the model store or the artifact directory holds, and a detail panel below it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.console import RenderableType
from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Static

from appliance.home import Home
from appliance.tui.screens.base import Page
from appliance.tui.widgets.records import RecordsTable, set_rows


class ListPage(Page):
    """A page that lists records from one service function, with a detail panel."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("r", "refresh", "Reload"),
    ]
    AUTO_FOCUS = "#records"
    EMPTY: ClassVar[str] = "nothing yet"
    DETAIL_TITLE: ClassVar[str] = "Detail"
    DETAIL_HINT: ClassVar[str] = ""

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.records: list[dict[str, Any]] = []
        """What the last listing returned, in table order."""

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The service function that lists this page's records (run in a worker)."""
        raise NotImplementedError

    def body(self) -> Iterable[Widget]:
        """A count line, the table, the detail panel."""
        yield Static("", id="list-status", classes="head")
        yield RecordsTable(id="records", cursor_type="row", zebra_stripes=True)
        yield from self.middle()
        with VerticalScroll(id="detail", classes="panel") as detail:
            detail.border_title = self.DETAIL_TITLE
            yield Static(self.DETAIL_HINT, id="detail-body")

    def middle(self) -> Iterable[Widget]:
        """Widgets between the table and the detail panel (job progress)."""
        return ()

    def on_mount(self) -> None:
        """First read."""
        self.action_refresh()

    def action_refresh(self) -> None:
        """Re-read the list."""
        self.query_one("#records").loading = True
        self.run_service("list", self.source(), self.home)

    def selected(self) -> str | None:
        """The first column of the row under the cursor, or None (with a banner line)."""
        table = self.query_one("#records", RecordsTable)
        if table.row_count == 0:
            self.banner.show_error(f"nothing selected: {self.EMPTY}")
            return None
        return str(table.get_row_at(table.cursor_row)[0])

    def show_detail(self, title: str, content: RenderableType) -> None:
        """Put `content` in the detail panel under `title` (plain text, not markup),
        scrolled to its top. A string `content` is read as markup: pass Text for data."""
        panel = self.query_one("#detail", VerticalScroll)
        panel.loading = False
        panel.border_title = escape(title)
        self.query_one("#detail-body", Static).update(content)
        panel.scroll_home(animate=False)

    def detail_loading(self, title: str) -> None:
        """Show that the detail panel is being filled."""
        panel = self.query_one("#detail", VerticalScroll)
        panel.border_title = escape(title)
        panel.loading = True

    def rows(self, records: list[dict[str, Any]]) -> tuple[list[str], list[list[str | Text]]]:
        """Column headers and rows for the records (default: every key as it is)."""
        keys = list(dict.fromkeys(k for record in records for k in record))
        return keys, [[str(record.get(k, "")) for k in keys] for record in records]

    def job_done(self, job: str, result: Any) -> None:
        """Fill the table."""
        if job == "list":
            self.records = list(result)
            table = self.query_one("#records", RecordsTable)
            table.loading = False
            headers, rows = self.rows(self.records)
            row = table.cursor_row
            set_rows(table, headers, rows)
            if rows:
                table.move_cursor(row=min(row, len(rows) - 1))
            status = f"{len(rows)} item(s)" if rows else self.EMPTY
            self.query_one("#list-status", Static).update(status)

    def job_failed(self, job: str, line: str) -> None:  # noqa: ARG002 - overrides Page's
        """Stop the loading indicators; the banner says why."""
        if job == "list":
            self.query_one("#records").loading = False
            self.query_one("#list-status", Static).update(Text("not available", style="red"))
        self.query_one("#detail", VerticalScroll).loading = False
