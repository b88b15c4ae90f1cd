"""Artifacts: one signed directory per training run. Verify the selected one (signature,
every file digest, trusted signer) and read its signed provenance: policy, data, base model,
code, training, privacy. Export merged weights when the policy allows it; run the privacy
check. Verification runs in a worker; export and the privacy check in niced children."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar, cast

from rich.console import Group
from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget

from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.tui.screens.lists import ListPage
from appliance.tui.widgets.jobstatus import JobStatus
from appliance.tui.widgets.passphrase import PassphraseModal, PathModal
from appliance.tui.widgets.provenance import privacy_section, provenance


def list_artifacts(home: Home) -> list[dict[str, Any]]:
    """Artifact directories, newest first."""
    from appliance.service.artifacts import list_artifacts as listing

    return cast("list[dict[str, Any]]", listing(home))  # rows of the generic list page


def inspect_artifact(home: Home, run: str) -> dict[str, Any]:
    """Verify the artifact and gather what its panel shows (in the worker: verification
    hashes every file, and the policy and privacy modules import pydantic)."""
    from appliance.service.artifacts import describe
    from appliance.service.privacy import LIMITS

    return {**describe(home, home.artifacts_dir / run), "privacy_limits": list(LIMITS)}


def refuse_if_forbidden(home: Home, run: str) -> None:
    """The audited refusal `export merge` gives when the policy forbids merging."""
    from appliance.service.export import refuse_if_forbidden as refuse

    refuse(home, home.artifacts_dir / run)


class ArtifactsScreen(ListPage):
    """Signed training outputs; verify and read the provenance of the selected one."""

    MODE = "artifacts"
    EMPTY = "no artifacts yet (appliance train RECIPE writes one per run)"
    DETAIL_TITLE = "Provenance"
    DETAIL_HINT = ("select a run and press enter or v to verify it and read its signed "
                   "provenance")
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *ListPage.BINDINGS,
        Binding("v", "verify", "Verify"),
        Binding("e", "export", "Export merged"),
        Binding("p", "privacy", "Privacy check"),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.verified: dict[str, bool] = {}
        self.described: dict[str, dict[str, Any]] = {}
        self.measured: dict[str, dict[str, Any]] = {}
        self.exported: dict[str, Any] = {}
        self.job_run = ""
        self.showing = ""

    def source(self) -> Callable[[Home], list[dict[str, Any]]]:
        """The artifact directory's listing."""
        return list_artifacts

    def middle(self) -> Iterable[Widget]:
        """The status line of an export or privacy check."""
        yield JobStatus(id="artifact-job")

    def rows(self, records: list[dict[str, Any]]) -> tuple[list[str], list[list[str | Text]]]:
        """Run, time, signature present, and the verdict of this session's verification."""
        out: list[list[str | Text]] = []
        for r in records:
            seen = self.verified.get(str(r["run"]))
            verdict = Text("not yet", style="dim") if seen is None else \
                Text("ok", style="green") if seen else Text("FAILED", style="bold red")
            out.append([str(r["run"]), str(r["modified (UTC)"]), str(r["signed"]), verdict])
        return ["run", "modified (UTC)", "signed", "verified (this session)"], out

    def on_data_table_row_selected(self) -> None:
        """Enter verifies."""
        self.action_verify()

    def action_verify(self) -> None:
        """Verify the selected artifact and show its provenance."""
        run = self.selected()
        if run is None:
            return
        self.showing = run
        self.detail_loading(f"Provenance: {run} (verifying…)")
        self.run_service("verify", inspect_artifact, self.home, run)

    def _show_provenance(self, run: str) -> None:
        result = self.described.get(run)
        limits = (result or {}).get("privacy_limits") or []
        parts: list[Any] = [provenance(result, limits) if result else
                            Text("not verified yet (v)", style="dim")]
        if run in self.measured:
            parts += [Text(""), Text("privacy check measured in this session (not part of the "
                                     "signed provenance)", style="bold"),
                      privacy_section(self.measured[run], limits)]
        self.show_detail(f"Provenance: {run}", Group(*parts))

    # --- export and privacy check -----------------------------------------------------
    def _busy(self) -> bool:
        if self.query_one("#artifact-job", JobStatus).running:
            self.banner.show_error(f"a job on {self.job_run} is still running")
            return True
        return False

    def action_export(self) -> None:
        """Export merged weights: the policy is asked first (a refusal is audited, as the
        command's is), then the output directory, then a child runs `export merge`."""
        run = self.selected()
        if run is None or self._busy():
            return
        self.job_run = run
        self.run_service("export-allowed", refuse_if_forbidden, self.home, run)

    def _ask_out(self) -> None:
        run = self.job_run

        def export_to(out: str | None) -> None:
            if not out:
                return

            def merge_signed(secret: bytes | None) -> None:
                if secret is None:
                    return
                self.query_one("#artifact-job", JobStatus).start(
                    f"verifying {run}, then merging it into the base model's weights and "
                    f"signing them -> {out}")
                self.run_child("export", ChildJob(self.home, [
                    "export", "merge", str(self.home.artifacts_dir / run), "--out", out,
                    "--json"], passphrase=secret))

            self.app.push_screen(PassphraseModal(escape(
                "Passphrase, to sign the merged weights:")), merge_signed)

        self.app.push_screen(PathModal(escape(f"Export {run} as merged safetensors weights "
                                              "into a new directory:")), export_to)

    def action_privacy(self) -> None:
        """Measure canary exposure of the selected artifact in a child (minutes on CPU)."""
        run = self.selected()
        if run is None or self._busy():
            return

        def measure(secret: bytes | None) -> None:
            if secret is None:
                return
            self.job_run = run
            self.query_one("#artifact-job", JobStatus).start(
                f"privacy check of {run}: verifying, then measuring canary exposure in the "
                "isolated child (a few minutes on CPU)")
            self.run_child("privacy", ChildJob(self.home, [
                "privacy-check", str(self.home.artifacts_dir / run), "--json"],
                passphrase=secret))

        self.app.push_screen(PassphraseModal(escape(
            f"Passphrase, to read the canaries of {run}'s dataset from the vault:")), measure)

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """Keep the privacy check's result (it comes even when the verdict is fail)."""
        if job == "privacy" and "verdict" in event:
            self.measured[self.job_run] = event
        elif job == "export" and "merged_root_digest" in event:
            self.exported = event

    def job_done(self, job: str, result: Any) -> None:
        """Route each job's result to its view."""
        status = self.query_one("#artifact-job", JobStatus)
        if job == "verify":
            run = self.showing
            self.described[run] = result
            self.verified[run] = bool(result.get("ok"))
            self._show_provenance(run)
            super().job_done("list", self.records)  # the verdict column
        elif job == "export-allowed":
            self._ask_out()
        elif job == "export":
            done = self.exported
            line = (f"merged {self.job_run} into {done.get('out')} "
                    f"({done.get('merged_root_digest')})")
            status.finish(line, ok=True)
            self.banner.show_info(line)
        elif job == "privacy":
            verdict = self.measured.get(self.job_run, {}).get("verdict", "?")
            status.finish(f"privacy check of {self.job_run}: {verdict}", ok=True)
            self._show_provenance(self.job_run)
        else:
            super().job_done(job, result)

    def job_failed(self, job: str, line: str) -> None:
        """The banner has the line; the status line and the panel say it too."""
        if job == "verify":
            self.show_detail(f"Provenance: {self.showing}",
                             Text(f"✗ could not verify: {line}", style="red"))
        if job in ("export", "privacy"):
            self.query_one("#artifact-job", JobStatus).finish(line, ok=False)
            if job == "privacy" and self.job_run in self.measured:
                self._show_provenance(self.job_run)
        super().job_failed(job, line)
