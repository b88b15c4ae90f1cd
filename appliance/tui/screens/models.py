"""Models: imported base models with their digests, size, format, and whether the policy
allows each (and why); import the embedded default or a path in a niced child process."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable

from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.tui.screens.lists import ListPage
from appliance.tui.widgets.dialogs import ModelImport, ModelImportModal
from appliance.tui.widgets.jobstatus import JobStatus
from appliance.tui.widgets.records import human_size, short_digest


def list_models(home: Home) -> list[dict[str, Any]]:
    """The model store's listing (loaded in the worker: it imports the policy model)."""
    from appliance.service.models import list_models as listing

    return cast("list[dict[str, Any]]", listing(home))  # rows of the generic list page


def model_detail(model: dict[str, Any]) -> Table:
    """Every recorded fact of one model, digests in full."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    allowed = bool(model.get("allowed"))
    grid.add_row("policy", Text(("allowed: " if allowed else "NOT allowed: ")
                                + str(model.get("allowed_reason", "")),
                                style="green" if allowed else "yellow"))
    grid.add_row("root digest", str(model.get("root_digest")))
    grid.add_row("source digest", str(model.get("source_digest")))
    grid.add_row("format", f"{model.get('kind')} (stored as safetensors)")
    grid.add_row("files", f"{model.get('file_count', '?')}, {human_size(model.get('size_bytes'))}")
    grid.add_row("imported", str(model.get("imported_at")))
    grid.add_row("path", str(model.get("path")))
    return grid


class ModelsScreen(ListPage):
    """Imported base models; `i` imports one."""

    MODE = "models"
    EMPTY = "no base models yet (press i, then Enter, for the embedded default)"
    DETAIL_TITLE = "Model"
    DETAIL_HINT = "select a model to see its digests in full and why the policy allows it"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *ListPage.BINDINGS,
        Binding("i", "import", "Import"),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.imported: dict[str, Any] = {}

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The model store's listing."""
        return list_models

    def middle(self) -> Iterable[Widget]:
        """The import's status line."""
        yield JobStatus(id="model-job")

    def rows(self, records: list[dict[str, Any]]) -> tuple[list[str], list[list[str | Text]]]:
        """Name, format, size, short root digest, allowed, the reason."""
        headers = ["name", "format", "size", "root digest", "allowed", "why"]
        out: list[list[str | Text]] = []
        for m in records:
            allowed = bool(m.get("allowed"))
            out.append([str(m.get("name")), str(m.get("kind")), human_size(m.get("size_bytes")),
                        short_digest(m.get("root_digest")),
                        Text("yes" if allowed else "no", style="green" if allowed else
                             "bold yellow"),
                        str(m.get("allowed_reason", "")).split(" (")[0]])  # full: the panel
        return headers, out

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        """The highlighted model's facts in full."""
        if 0 <= event.cursor_row < len(self.records):
            model = self.records[event.cursor_row]
            self.show_detail(f"Model {model.get('name')}", model_detail(model))

    def action_import(self) -> None:
        """Ask for a path and name (neither: the embedded default), then import."""
        if self.query_one("#model-job", JobStatus).running:
            self.banner.show_error("a model import is still running")
            return
        self.app.push_screen(ModelImportModal(), self._start)

    def _start(self, request: ModelImport | None) -> None:
        if request is None:
            return
        if request.default:
            args = ["model", "import", "--default", "--json"]
            if request.name:
                args += ["--name", request.name]
            what = "the embedded default SmolLM2-135M-Instruct (converting the GGUF)"
        else:
            args = ["model", "import", str(request.path), "--name", str(request.name),
                    "--json"]
            what = f"{request.name} from {request.path}"
        self.imported = {}
        self.query_one("#model-job", JobStatus).start(f"importing {what}: copying, "
                                                      "checking and digesting every file")
        self.run_child("import", ChildJob(self.home, args))

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """The command's JSON result."""
        if job == "import" and "root_digest" in event:
            self.imported = event

    def job_done(self, job: str, result: Any) -> None:
        """Say what was imported and reload the list."""
        if job != "import":
            super().job_done(job, result)
            return
        done = self.imported
        state = "already imported" if done.get("cached") else "imported"
        allowed = "allowed by the policy" if done.get("allowed") else \
            "NOT allowed by the policy"
        line = f"{done.get('name')}: {state} ({done.get('kind')}), {allowed}"
        self.query_one("#model-job", JobStatus).finish(line, ok=True)
        self.banner.show_info(line)
        self.action_refresh()

    def job_failed(self, job: str, line: str) -> None:
        """The status line and the banner say why."""
        if job == "import":
            self.query_one("#model-job", JobStatus).finish(line, ok=False)
        super().job_failed(job, line)
