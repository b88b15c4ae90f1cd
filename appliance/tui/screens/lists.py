"""Datasets, Models and Artifacts: what the vault, the model store and the artifact
directory hold. Import, training and export live with their own services; these pages list
and verify through `appliance.service.optional`, which says plainly when a build lacks one."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from appliance.home import Home
from appliance.service.optional import list_datasets, list_models, verify_artifact
from appliance.service.overview import latest_runs
from appliance.tui.screens.base import Page
from appliance.tui.widgets.records import RecordsTable


class ListPage(Page):
    """A page that lists records from one service function."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("r", "refresh", "Reload"),
    ]
    EMPTY: ClassVar[str] = "nothing yet"
    COLUMNS: ClassVar[tuple[str, ...]] = ()

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The service function that lists this page's records."""
        raise NotImplementedError

    def body(self) -> Iterable[Widget]:
        """A count line and the table."""
        yield Static("", id="list-status", classes="head")
        yield RecordsTable(id="records", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        """First read."""
        self.action_refresh()

    def action_refresh(self) -> None:
        """Re-read the list."""
        self.query_one("#records").loading = True
        self.run_service("list", self.source(), self.home)

    def job_done(self, job: str, result: Any) -> None:
        """Fill the table."""
        if job == "list":
            records = [r if isinstance(r, dict) else vars(r) for r in result]
            self.query_one("#records", RecordsTable).show(records, self.COLUMNS)
            status = f"{len(records)} item(s)" if records else self.EMPTY
            self.query_one("#list-status", Static).update(status)

    def job_failed(self, job: str, line: str) -> None:
        """Stop the loading indicator; the banner says why."""
        if job == "list":
            self.query_one("#records").loading = False
            self.query_one("#list-status", Static).update(Text("not available", style="red"))


class DatasetsScreen(ListPage):
    """Encrypted datasets in the vault (their public summaries; no passphrase needed)."""

    MODE = "datasets"
    AUTO_FOCUS = "#records"
    EMPTY = "no datasets yet (appliance dataset import FILE --name NAME)"

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The vault's listing."""
        return list_datasets


class ModelsScreen(ListPage):
    """Imported base models, their digests, and whether the policy allows each."""

    MODE = "models"
    EMPTY = "no base models yet (appliance model import PATH --name NAME)"

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The model store's listing."""
        return list_models


def list_runs(home: Home) -> list[dict[str, Any]]:
    """Artifact directories, newest first, as records."""
    return [{"run": r.run_id, "modified (UTC)": r.modified, "signed": "yes" if r.signed else
             "no"} for r in latest_runs(home, limit=1000)]


class ArtifactsScreen(ListPage):
    """One signed directory per training run; verify the selected one."""

    MODE = "artifacts"
    EMPTY = "no artifacts yet (appliance train RECIPE writes one per run)"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *ListPage.BINDINGS,
        Binding("v", "verify", "Verify selected"),
    ]

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The artifact directory's listing."""
        return list_runs

    def body(self) -> Iterable[Widget]:
        """The list and a panel for the verification result."""
        yield from super().body()
        detail = Static("select a run and press v to verify it", id="verify-detail",
                        classes="panel")
        detail.border_title = "Verification"
        yield detail

    def action_verify(self) -> None:
        """Verify the selected artifact: signature, every file digest, trusted signer."""
        table = self.query_one("#records", RecordsTable)
        if table.row_count == 0:
            self.banner.show_error("no artifact selected (train a model first)")
            return
        run = str(table.get_row_at(table.cursor_row)[0])
        self.query_one("#verify-detail").loading = True
        self.run_service("verify", verify_artifact, self.home, self.home.artifacts_dir / run)

    def job_done(self, job: str, result: Any) -> None:
        """Fill the list, or show a verification."""
        if job != "verify":
            super().job_done(job, result)
            return
        detail = self.query_one("#verify-detail", Static)
        detail.loading = False
        ok = bool(result.get("ok"))
        text = Text("verified" if ok else "NOT verified", style="bold green" if ok else
                    "bold red")
        for key, value in result.items():
            if key != "ok":
                text.append(f"\n{key:<12} ", style="dim").append(str(value))
        detail.update(text)

    def job_failed(self, job: str, line: str) -> None:
        """Stop whichever indicator was running."""
        if job == "verify":
            self.query_one("#verify-detail").loading = False
        else:
            super().job_failed(job, line)
