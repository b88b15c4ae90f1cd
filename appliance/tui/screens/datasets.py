"""Datasets: import with live progress (a niced child process), the scrub report, scrubbed
samples decrypted in memory, remove.

Nothing here writes a record anywhere: the import runs as `appliance dataset import
--json-events` in a child (its events carry counts only); the report and the samples come
from the vault service in a worker after the passphrase modal, and live only in widgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import Label, ProgressBar

from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.tui.screens.lists import ListPage
from appliance.tui.widgets.dialogs import ConfirmModal, DatasetImport, DatasetImportModal
from appliance.tui.widgets.passphrase import PassphraseModal
from appliance.tui.widgets.records import human_size, short_digest
from appliance.tui.widgets.scrub_report import samples, scrub_report

if TYPE_CHECKING:
    from appliance.service.datasets import DatasetMetadata, DatasetSummary, ImportOptions

STAGES = (("read", "read and validate"), ("scrub", "scrub (texts)"),
          ("residual", "residual check"), ("write", "encrypt and write"))
SAMPLE_COUNT = 25
"""Records shown by browse (the first ones of both splits)."""


# The vault and the scrubber import pydantic and more: loaded in the worker, not at start.
def list_datasets(home: Home) -> list[dict[str, Any]]:
    """The vault's public listing (rows of the generic list page)."""
    from appliance.service.datasets import list_datasets as listing

    return cast("list[dict[str, Any]]", listing(home))


def import_options(home: Home) -> ImportOptions:
    """What the policy says about canaries at import."""
    from appliance.service.datasets import import_options as options

    return options(home)


def show_dataset(home: Home, name: str, passphrase: bytes) -> DatasetMetadata:
    """Verified metadata and the decrypted scrub report."""
    from appliance.service.datasets import show_dataset as show

    return show(home, name, passphrase=passphrase)


def sample_dataset(home: Home, name: str, passphrase: bytes) -> list[dict[str, Any]]:
    """The first scrubbed records, decrypted in memory."""
    from appliance.service.datasets import sample_dataset as sample

    return sample(home, name, n=SAMPLE_COUNT, split="all", passphrase=passphrase)


def remove_dataset(home: Home, name: str) -> DatasetSummary:
    """Destroy a dataset."""
    from appliance.service.datasets import remove_dataset as remove

    return remove(home, name)


class DatasetsScreen(ListPage):
    """Encrypted datasets in the vault: their public summaries (no passphrase needed), and
    behind the passphrase modal their scrub reports and scrubbed samples."""

    MODE = "datasets"
    EMPTY = "no datasets yet (press i to import one)"
    DETAIL_TITLE = "Scrub report"
    DETAIL_HINT = ("i imports a file; on a dataset, enter or s shows its scrub report, b its "
                   "scrubbed records, d removes it (each asks for the passphrase first)")
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *ListPage.BINDINGS,
        Binding("i", "import", "Import"),
        Binding("s", "show", "Scrub report"),
        Binding("b", "browse", "Browse samples"),
        Binding("d", "remove", "Remove"),
        Binding("x", "cancel_import", "Cancel import"),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.importing: str | None = None
        self.job: ChildJob | None = None
        self.report: dict[str, Any] | None = None
        self.browsing = ""

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The vault's listing."""
        return list_datasets

    def middle(self) -> Iterable[Widget]:
        """One progress bar per import stage (shown while and after an import)."""
        with Vertical(id="import-progress", classes="panel") as box:
            box.border_title = "Import"
            for stage, label in STAGES:
                with Horizontal(classes="stage"):
                    yield Label(label, classes="stage-label")
                    yield ProgressBar(id=f"stage-{stage}", show_eta=False)

    def rows(self, records: list[dict[str, Any]]) -> tuple[list[str], list[list[str | Text]]]:
        """Name, split sizes, size, creation time, digest (a damaged file says so)."""
        headers = ["name", "train", "eval", "size", "created (UTC)", "digest"]
        out: list[list[str | Text]] = []
        for r in records:
            if r.get("problem"):
                out.append([r["name"], "?", "?", human_size(r.get("size_bytes")), "?",
                            Text(str(r["problem"]), style="red")])
                continue
            out.append([r["name"], str(r.get("train_count", "")), str(r.get("eval_count", "")),
                        human_size(r.get("size_bytes")), str(r.get("created", "")),
                        short_digest(r.get("digest"))])
        return headers, out

    def check_action(self, action: str,  # Textual's hook, its signature
                     parameters: tuple[object, ...]) -> bool | None:  # noqa: ARG002
        """`x` only while an import runs."""
        if action == "cancel_import":
            return self.importing is not None
        return True

    # --- import ----------------------------------------------------------------------
    def action_import(self) -> None:
        """Ask the policy about canaries, then the file and name, then the passphrase."""
        if self.importing is not None:
            self.banner.show_error(f"dataset {self.importing!r} is still being imported "
                                   "(x cancels it)")
            return
        self.run_service("import-options", import_options, self.home)

    def _ask_import(self, options: dict[str, Any]) -> None:
        modal = DatasetImportModal(policy_plants=bool(options.get("policy_plants_canaries")),
                                   check_before_signing=bool(options.get(
                                       "check_before_signing")))
        self.app.push_screen(modal, self._ask_passphrase)

    def _ask_passphrase(self, request: DatasetImport | None) -> None:
        if request is None:
            return

        def start(secret: bytes | None) -> None:
            if secret is not None:
                self._start_import(request, secret)

        self.app.push_screen(PassphraseModal(
            escape(f"Passphrase, to encrypt {request.name!r} into the vault:")), start)

    def _start_import(self, request: DatasetImport, secret: bytes) -> None:
        args = ["dataset", "import", request.file, "--name", request.name, "--json-events"]
        if request.canaries:
            args.append("--canaries")
        self.importing, self.report = request.name, None
        self.job = ChildJob(self.home, args, passphrase=secret)
        box = self.query_one("#import-progress")
        box.border_title = escape(f"Importing {request.name!r} from {request.file}")
        box.display = True
        for stage, _ in STAGES:
            self.query_one(f"#stage-{stage}", ProgressBar).update(total=None, progress=0)
        self.banner.show_info(f"importing {request.name!r}: scrubbing runs in a separate "
                              "process; the console stays usable")
        self.refresh_bindings()
        self.run_child("import", self.job)

    def action_cancel_import(self) -> None:
        """Stop the running import (nothing is written until its very end)."""
        if self.job is not None:
            self.job.cancel()

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """Move a stage's bar; keep the final report."""
        if job != "import":
            return
        if event.get("type") == "progress" and event.get("stage") in dict(STAGES):
            stage = str(event["stage"])
            total = max(1, int(event.get("total") or 1))
            self.query_one(f"#stage-{stage}", ProgressBar).update(
                total=total, progress=min(int(event.get("done") or 0), total))
            for earlier, _ in STAGES[:[s for s, _ in STAGES].index(stage)]:
                bar = self.query_one(f"#stage-{earlier}", ProgressBar)
                if bar.total is None:
                    bar.update(total=1, progress=1)
        elif event.get("type") == "report" and isinstance(event.get("report"), dict):
            self.report = event["report"]

    def _import_finished(self, ok: bool) -> None:
        name = self.importing
        self.importing, self.job = None, None
        self.refresh_bindings()
        box = self.query_one("#import-progress")
        box.border_title = escape(f"Import of {name!r} " + ("done" if ok else "failed"))
        if ok:
            for stage, _ in STAGES:
                self.query_one(f"#stage-{stage}", ProgressBar).update(total=1, progress=1)

    # --- report, samples, remove -----------------------------------------------------
    def on_data_table_row_selected(self) -> None:
        """Enter on a dataset shows its scrub report."""
        self.action_show()

    def _with_passphrase(self, why: str, then: Callable[[str, bytes], None]) -> None:
        name = self.selected()
        if name is None:
            return

        def go(secret: bytes | None) -> None:
            if secret is not None:
                then(name, secret)

        self.app.push_screen(PassphraseModal(escape(f"Passphrase, to {why} {name!r}:")), go)

    def action_show(self) -> None:
        """The selected dataset's scrub report (encrypted metadata: passphrase first)."""
        def show(name: str, secret: bytes) -> None:
            self.detail_loading(f"Scrub report: {name}")
            self.run_service("show", show_dataset, self.home, name, secret)

        self._with_passphrase("open the scrub report of", show)

    def action_browse(self) -> None:
        """The selected dataset's first scrubbed records, decrypted in memory."""
        def browse(name: str, secret: bytes) -> None:
            self.browsing = name
            self.detail_loading(f"Scrubbed records: {name}")
            self.run_service("samples", sample_dataset, self.home, name, secret)

        self._with_passphrase("decrypt (in memory) records of", browse)

    def action_remove(self) -> None:
        """Remove the selected dataset after a confirmation."""
        name = self.selected()
        if name is None:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.run_service("remove", remove_dataset, self.home, name)

        self.app.push_screen(ConfirmModal(escape(
            f"Remove dataset {name!r}? Its wrapped key is destroyed first, so it cannot be "
            "recovered."), yes="Remove"), confirmed)

    def job_done(self, job: str, result: Any) -> None:
        """Route each job's result to its view."""
        if job == "import-options":
            self._ask_import(result)
        elif job == "import":
            self._import_finished(True)
            report = self.report or {}
            name = report.get("name", "?")
            self.banner.show_info(
                f"imported {name!r}: {report.get('records_out')} of "
                f"{report.get('records_in')} records stored ({report.get('rejected')} "
                f"rejected, {report.get('quarantined')} quarantined)")
            self.show_detail(f"Import report: {name}", scrub_report(report))
            self.action_refresh()
        elif job == "show":
            metadata = result.get("metadata") or {}
            self.show_detail(f"Scrub report: {result.get('name')}",
                             scrub_report(metadata.get("report") or {}, result))
        elif job == "samples":
            self.show_detail(f"Scrubbed records: {self.browsing} (first {len(result)}, both "
                             "splits; decrypted in memory only)", samples(result))
        elif job == "remove":
            self.banner.show_info(f"removed dataset {result.get('name')!r} (its wrapped key "
                                  "was destroyed)")
            self.show_detail(self.DETAIL_TITLE, self.DETAIL_HINT)
            self.action_refresh()
        else:
            super().job_done(job, result)

    def job_failed(self, job: str, line: str) -> None:
        """The banner has the line; reset what was waiting."""
        if job == "import":
            self._import_finished(False)
        super().job_failed(job, line)
