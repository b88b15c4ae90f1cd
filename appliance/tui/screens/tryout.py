"""Try: ask a signed adapter a question and read its answer beside the base model's.

The answer comes from `appliance generate ARTIFACT --prompts - --compare-base --json`, run as
a niced child (appliance.service.jobs.ChildJob) watched by `Page.run_child`: the artifact is
verified there, the model runs in the sandboxed model process (no network), and every answer
is PII-masked in that process before it reaches the console. The prompt travels over the
child's standard input (never on disk, never in argv). The page keeps this session's
exchanges, newest last; keys stay live while the model generates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, ClassVar

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.tui.screens.base import Page
from appliance.tui.widgets.jobstatus import JobStatus

MAX_TOKENS = 48
"""Greedy tokens per answer on this page (the CLI's --max-tokens)."""


def list_artifacts(home: Home) -> list[str]:
    """Run ids of the home's signed artifacts, newest first."""
    from appliance.service.artifacts import list_artifacts as listing

    return [str(r["run"]) for r in listing(home) if r["signed"] == "yes"]


def generate_job(home: Home, run: str, prompt: str, *,
                 max_tokens: int = MAX_TOKENS) -> ChildJob:
    """The child that answers `prompt` with artifact `run` and with the base model."""
    args = ["generate", str(home.artifacts_dir / run), "--prompts", "-", "--compare-base",
            "--json", "--max-tokens", str(max_tokens)]
    line = json.dumps({"prompt": prompt}) + "\n"
    return ChildJob(home, args, stdin=line.encode("utf-8"), label="appliance generate")


class TryScreen(Page):
    """Pick an artifact, type a prompt: base and adapter answers side by side."""

    MODE = "try"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("p", "prompt", "Prompt"),
        Binding("x", "cancel", "Cancel"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.job: ChildJob | None = None
        self.exchanges: list[dict[str, str]] = []
        """This session's prompts and answers (`prompt`, `base`, `adapter`), oldest first."""
        self.asking = ""

    def body(self) -> Iterable[Widget]:
        """Artifact choice, prompt field, status line, two answer panels."""
        with Horizontal(id="try-setup"):
            yield Label("artifact")
            yield Select[str]([], prompt="choose a signed artifact", id="try-artifact",
                              compact=True)
        yield Input(placeholder="type a prompt, enter asks the base model and the adapter",
                    id="try-prompt")
        yield JobStatus(id="try-job")
        with Horizontal(id="try-answers"):
            with VerticalScroll(classes="panel", id="try-base-panel") as base:
                base.border_title = "Base model"
                yield Static(Text("no answer yet", style="dim"), id="try-base")
            with VerticalScroll(classes="panel", id="try-adapter-panel") as adapter:
                adapter.border_title = "Adapter"
                yield Static(Text("no answer yet", style="dim"), id="try-adapter")

    def on_mount(self) -> None:
        """List the artifacts."""
        self.action_reload()

    def action_reload(self) -> None:
        """Read the artifact list again."""
        self.run_service("artifacts", list_artifacts, self.home)

    def action_prompt(self) -> None:
        """Focus the prompt field."""
        self.query_one("#try-prompt", Input).focus()

    def action_cancel(self) -> None:
        """Stop the running generation."""
        if self.job is not None and self.job.running:
            self.job.cancel()

    @property
    def generating(self) -> bool:
        """True while a child is answering."""
        return self.query_one("#try-job", JobStatus).running

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter in the prompt field asks."""
        if event.input.id != "try-prompt":
            return
        prompt = event.value.strip()
        run = self.query_one("#try-artifact", Select).value
        if not prompt:
            return
        if not isinstance(run, str):
            self.banner.show_error("choose a signed artifact first (r reloads the list)")
            return
        if self.generating:
            self.banner.show_error("an answer is still being generated (x cancels it)")
            return
        event.input.value = ""
        self.asking = prompt
        self.job = generate_job(self.home, run, prompt)
        self.query_one("#try-job", JobStatus).start(
            f"{run}: loading the model in the sandbox and answering…")
        self.run_child("generate", self.job)

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """A row of `generate --json`: show it."""
        if job != "generate" or "adapter" not in event:
            return
        self.exchanges.append({"prompt": str(event.get("prompt", self.asking)),
                               "base": str(event.get("base", "")),
                               "adapter": str(event["adapter"])})
        self._show()

    def _show(self) -> None:
        for side in ("base", "adapter"):
            parts: list[str] = []
            for row in self.exchanges:
                parts.append(f"[bold]> {escape(row['prompt'])}[/]\n{escape(row[side])}\n")
            self.query_one(f"#try-{side}", Static).update("\n".join(parts))
            self.query_one(f"#try-{side}-panel", VerticalScroll).scroll_end(animate=False)

    def job_done(self, job: str, result: Any) -> None:
        """The artifact list arrived, or an answer is complete."""
        if job == "artifacts":
            select: Select[str] = self.query_one("#try-artifact", Select)
            current = select.value
            with self.prevent(Select.Changed):
                select.set_options([(run, run) for run in result])
                if isinstance(current, str) and current in result:
                    select.value = current
                elif result:
                    select.value = result[0]
            if not result:
                self.banner.show_info("no signed artifacts yet (appliance train RECIPE "
                                      "writes one per run)")
        elif job == "generate":
            self.query_one("#try-job", JobStatus).finish(
                "answered (PII-masked in the sandbox)", ok=True)

    def job_failed(self, job: str, line: str) -> None:
        """The banner shows the line; stop the status clock."""
        if job == "generate":
            self.query_one("#try-job", JobStatus).finish(f"no answer: {line}", ok=False)
