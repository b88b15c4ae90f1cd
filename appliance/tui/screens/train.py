"""Train: choose a dataset, a base model and a recipe; start, watch, cancel and resume.

A run is the CLI's own `appliance train EFFECTIVE_RECIPE --json-events` in a niced child
process (`appliance.service.jobs.ChildJob`), so the console never imports torch and answers
keys while it trains. It runs through `Page.run_child`, the console's one child-job
mechanism: a thread worker starts the child and reads its events; each comes to this page as
a `JobEvent`, is folded into a `TrainProgress`, and redraws the loss and eval plots and the
progress panel ("attributes down, messages up"); the end comes as `JobDone` or `JobFailed`.
The child is in `app.child_jobs`, so closing the console cancels it.

Cancelling sends SIGTERM, which the trainer turns into a checkpoint at the next step boundary
and an audited cancellation. It is sent only once the isolated trainer has reported that it
started (before that, the command has not yet installed the handler that forwards the signal
to the trainer); a cancel asked for earlier waits for that moment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Label, Select, Static

from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.service.jobs import ChildJob
from appliance.service.train_progress import Kind, TrainProgress, eta_text
from appliance.service.training_jobs import (
    EffectiveRecipe,
    TrainingChoices,
    effective_recipe,
    resume_job,
    run_history,
    train_job,
    training_choices,
    write_effective_recipe,
)
from appliance.tui.screens.base import Page
from appliance.tui.widgets.lineplot import LinePlot
from appliance.tui.widgets.passphrase import PassphraseModal
from appliance.tui.widgets.records import set_rows

RUN_COLUMNS = ("run (started, UTC)", "recipe", "dataset", "checkpoint")
PHASE_STYLE = {"done": "bold green", "failed": "bold red", "stopped": "bold yellow",
               "stopping": "bold yellow"}
BAR_WIDTH = 30
IDLE = ("no run yet: choose a dataset, a base model and a recipe on the left (tab moves, "
        "enter opens a list), then s starts; R resumes an interrupted run")

Selection = tuple[str, str, str]
"""(dataset, base model, recipe path)."""


def _choice(label: str, ident: str) -> Iterable[Widget]:
    with Horizontal(classes="choice"):
        yield Label(label, classes="choice-label")
        yield Select[str]([], prompt=f"choose a {label.lower()}", id=ident, compact=True)


def _bar(step: int, total: int) -> Text:
    done = round(BAR_WIDTH * step / total) if total else 0
    share = f" {100 * step // total:3d}%" if total else ""
    return Text.assemble(("█" * done, "cyan"), ("░" * (BAR_WIDTH - done), "dim"), share)


def _evals(progress: TrainProgress) -> Text:
    text = Text()
    for name, values in (("before", progress.eval_before), ("after", progress.eval_after)):
        text.append(f"{name} ", style="dim")
        if values:
            text.append(f"{values['loss']:.4f}", style="bold")
            text.append(f" (ppl {values.get('perplexity', 0.0):.2f})   ", style="dim")
        else:
            text.append("-   ")
    return text


def progress_text(progress: TrainProgress | None, artifact: str = "") -> Text:
    """The progress panel: status, run, step bar, loss, lr, tokens/s, ETA, evals,
    checkpoints, tripwire reports and, when done, the artifact."""
    if progress is None:
        return Text(IDLE, style="dim")
    p = progress
    text = Text()
    text.append("status   ", style="dim").append(p.phase, style=PHASE_STYLE.get(p.phase, "bold"))
    text.append(f"  {p.detail}\n")
    text.append("run      ", style="dim").append((p.run_id or "-") + "\n")
    text.append("step     ", style="dim").append(f"{p.step}/{p.total_steps or '?'}  ")
    text.append(_bar(p.step, p.total_steps)).append("\n")
    losses = p.losses
    text.append("loss     ", style="dim").append(f"{losses[-1]:.4f}" if losses else "-")
    text.append("   lr ", style="dim").append(f"{p.lr:.2e}" if p.lr is not None else "-")
    text.append("   tokens/s ", style="dim")
    text.append(f"{p.tokens_per_s:.0f}" if p.tokens_per_s is not None else "-")
    text.append("   ETA ", style="dim").append(eta_text(p.eta_s) + "\n")
    text.append("eval     ", style="dim").append(_evals(p)).append("\n")
    text.append("saved    ", style="dim")
    text.append(("checkpoints at step " + ", ".join(map(str, p.checkpoints[-4:])))
                if p.checkpoints else "no checkpoint yet")
    if p.blocked:
        text.append("\ntripwire ", style="dim")
        text.append(f"{p.blocked} blocked attempt(s), recorded in the audit log",
                    style="bold red")
    if artifact:
        text.append("\nartifact ", style="dim").append(artifact, style="bold green")
        text.append("  (6 Artifacts verifies it)", style="dim")
    return text


class TrainScreen(Page):
    """Start a QLoRA run from a dataset, a base model and a recipe; watch it; stop it."""

    MODE = "train"
    AUTO_FOCUS = "#dataset"
    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        *Page.BINDINGS,
        Binding("s", "start", "Start"),
        Binding("c", "cancel", "Cancel run"),
        Binding("R", "resume", "Resume selected", key_display="R"),
        Binding("r", "refresh", "Reload"),
    ]

    def __init__(self, home: Home) -> None:
        super().__init__(home)
        self.choices: TrainingChoices | None = None
        self.checked: tuple[Selection, EffectiveRecipe] | None = None
        self.start_when_checked = False
        self.refusal_shown = False
        self.progress: TrainProgress | None = None
        self.artifact = ""
        self.running = False
        """A run is in progress (from the passphrase to the child's exit)."""
        self.job: ChildJob | None = None
        self.child_started = False
        self.cancel_requested = False

    def body(self) -> Iterable[Widget]:
        """Setup and interrupted runs on the left; plots and progress on the right."""
        with Horizontal(id="train-split"):
            with Vertical(id="train-left"):
                with Vertical(id="train-setup", classes="panel") as setup:
                    setup.border_title = "Run setup"
                    yield from _choice("Dataset", "dataset")
                    yield from _choice("Base model", "model")
                    yield from _choice("Recipe", "recipe")
                    yield Static("", id="effective")
                with Vertical(id="train-runs", classes="panel") as runs:
                    runs.border_title = "Interrupted runs (R resumes)"
                    yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
            with Vertical(id="train-right"):
                loss = LinePlot("loss", id="loss-plot", classes="panel")
                loss.border_title = "Training loss per step"
                yield loss
                evals = LinePlot("eval", id="eval-plot", classes="panel")
                evals.border_title = "Held-out eval loss: before -> after training"
                yield evals
                status = Static(progress_text(None), id="progress", classes="panel")
                status.border_title = "Progress"
                yield status

    def on_mount(self) -> None:
        """Read the choices."""
        set_rows(self.query_one("#runs", DataTable), RUN_COLUMNS, [])
        self.action_refresh()

    # ---- choices and the effective recipe ---------------------------------------------
    def action_refresh(self) -> None:
        """Re-read datasets, models, recipes and interrupted runs."""
        self.query_one("#train-setup").loading = True
        self.run_service("choices", training_choices, self.home)

    def _fill_choices(self, choices: TrainingChoices) -> None:
        self.choices = choices
        self.query_one("#train-setup").loading = False
        recipes = self.query_one("#recipe", Select)
        recipe_options = [(r.label, r.path) for r in choices.recipes]
        defaults = _recipe_defaults(choices, recipes.value)
        self._set_options("#recipe", recipe_options, choices.recipes[0].path
                          if choices.recipes else None)
        self._set_options("#dataset", [(f"{d['name']}  ({d.get('train_count', '?')} train / "
                                        f"{d.get('eval_count', '?')} eval)", d["name"])
                                       for d in choices.datasets], defaults[0])
        self._set_options("#model", [(m["name"] + ("" if m.get("allowed") else
                                                   "  (not allowed by the policy)"), m["name"])
                                     for m in choices.models], defaults[1])
        rows = [[r.run_id, r.recipe, r.dataset,
                 f"step {r.checkpoint_step}/{r.total_steps}" if r.checkpoint_step is not None
                 else f"none (restarts at 0 of {r.total_steps})"]
                for r in choices.resumable]
        set_rows(self.query_one("#runs", DataTable), RUN_COLUMNS, rows)
        self._check_selection()

    def _set_options(self, selector: str, options: list[tuple[str, str]],
                     default: str | None) -> None:
        """Replace a list's options, keeping the current value when it is still offered."""
        select: Select[str] = self.query_one(selector, Select)
        current = select.value
        with self.prevent(Select.Changed):
            select.set_options(options)
            values = [value for _, value in options]
            if isinstance(current, str) and current in values:
                select.value = current
            elif default in values:
                select.value = default
            elif values:
                select.value = values[0]

    def selection(self) -> Selection | None:
        """The chosen (dataset, base model, recipe path), or None while one is missing."""
        values = [self.query_one(f"#{name}", Select).value
                  for name in ("dataset", "model", "recipe")]
        if not all(isinstance(v, str) for v in values):
            return None
        return str(values[0]), str(values[1]), str(values[2])

    def on_select_changed(self, event: Select.Changed) -> None:
        """A new choice: check the effective recipe against the policy."""
        event.stop()
        self._check_selection()

    def _check_selection(self) -> None:
        chosen = self.selection()
        effective = self.query_one("#effective", Static)
        self.checked = None
        if chosen is None:
            effective.update(Text("choose a dataset, a base model and a recipe", style="dim"))
            return
        effective.update(Text("checking the recipe against the policy…", style="dim"))
        dataset, model, recipe = chosen
        self.run_service("check", effective_recipe, self.home, recipe, dataset, model)

    def _checked(self, result: EffectiveRecipe) -> None:
        chosen = self.selection()
        data = result.data
        if chosen != (data["dataset"], data["base_model"], result.source):
            return  # the choice changed meanwhile; its own check is on its way
        self.checked = (chosen, result)
        if self.refusal_shown:  # the banner still shows the previous choice's refusal
            self.refusal_shown = False
            self.banner.clear()
        self.query_one("#effective", Static).update(Text.assemble(
            ("✓ within the policy\n", "green"), result.summary))
        if self.start_when_checked:
            self.start_when_checked = False
            self._ask_to_start(result)

    # ---- start, resume, cancel --------------------------------------------------------
    def action_start(self) -> None:
        """Check the choice, ask for the passphrase, start the run."""
        if self._refuse_if_running():
            return
        chosen = self.selection()
        if chosen is None:
            self.banner.show_error("choose a dataset, a base model and a recipe first "
                                   "(tab moves between the lists, enter opens one)")
            return
        if self.checked is not None and self.checked[0] == chosen:
            self._ask_to_start(self.checked[1])
        else:
            self.start_when_checked = True
            self._check_selection()

    def _ask_to_start(self, effective: EffectiveRecipe) -> None:
        def answered(secret: bytes | None) -> None:
            if secret:
                self._launch(lambda: train_job(self.home, write_effective_recipe(
                    self.home, effective), secret))

        dataset = effective.data["dataset"]
        self.app.push_screen(PassphraseModal(f"Passphrase to unlock the vault (dataset "
                                             f"{dataset!r}) and sign the artifact:"), answered)

    def action_resume(self) -> None:
        """Resume the run selected under Interrupted runs from its newest checkpoint."""
        if self._refuse_if_running():
            return
        table = self.query_one("#runs", DataTable)
        if table.row_count == 0:
            self.banner.show_error("no interrupted run to resume (a run stopped with c "
                                   "appears here)")
            return
        run_id = str(table.get_row_at(table.cursor_row)[0])

        def answered(secret: bytes | None) -> None:
            if secret:
                self._launch(lambda: resume_job(self.home, run_id, secret), resume=run_id)

        self.app.push_screen(PassphraseModal(f"Passphrase to resume run {run_id}:"), answered)

    def action_cancel(self) -> None:
        """Stop the run at the next step boundary; it saves a checkpoint and can be resumed."""
        if not self.running or self.progress is None:
            self.banner.show_error("no run in progress (s starts one)")
            return
        if self.cancel_requested or self.progress.stop_requested:
            self.banner.show_info("already stopping: the run checkpoints at the next step "
                                  "boundary")
            return
        if not self.progress.cancellable:
            self.banner.show_error("the run is past its last step (evaluating and signing the "
                                   "artifact); it ends in a moment")
            return
        self.cancel_requested = True
        self.progress.request_stop()
        if self.job is not None and self.child_started:
            self.job.cancel()
        self._redraw()

    def _refuse_if_running(self) -> bool:
        if self.running:
            self.banner.show_error("a run is in progress (c cancels it; one run at a time)")
        return self.running

    def _launch(self, make_job: Callable[[], ChildJob], resume: str | None = None) -> None:
        """Run the child through the page's one child-job mechanism (`Page.run_child`): its
        events come back as `job_event("train", ...)`, its end as `job_done` or
        `job_failed`, and the app cancels it if the console closes first."""
        try:
            job = make_job()  # writes the effective recipe: a few hundred bytes
            history = run_history(self.home, resume) if resume else []
        except ApplianceError as exc:
            self.banner.show_error(exc.line())
            return
        self.running, self.job, self.child_started, self.cancel_requested = True, job, False, \
            False
        self.progress, self.artifact = TrainProgress(run_id=resume or ""), ""
        self.progress.preload(history)  # a resumed run's curves go on where they were
        self.banner.clear()
        self._redraw()
        self.run_child("train", job)

    def _train_event(self, event: dict[str, Any]) -> None:
        """Fold one event of the training child into the progress and redraw."""
        if self.progress is None or event.get("type") == Kind.GENERATIONS:
            return  # generations carry sample text: the page shows none
        if event.get("type") == Kind.STARTED and not self.child_started:
            self.child_started = True
            if self.cancel_requested and self.job is not None:
                self.job.cancel()
        self.progress.apply(event)
        self._redraw()

    def _train_ended(self, ok: bool, artifact: str = "", line: str = "") -> None:
        """Show how the run ended, and re-read the interrupted runs."""
        self.running, self.job = False, None
        progress = self.progress or TrainProgress()
        self.progress = progress
        if ok:
            progress.phase, progress.detail = "done", "artifact signed and in place"
            self.artifact = artifact
            before, after = progress.eval_before.get("loss"), progress.eval_after.get("loss")
            evals = f"; eval loss {before:.4f} -> {after:.4f}" if before and after else ""
            self.banner.show_info(f"run {progress.run_id} finished{evals}: artifact "
                                  f"{artifact} (6 Artifacts verifies it)")
        elif progress.phase == "stopped":
            self.banner.show_info(f"run {progress.run_id} stopped at step {progress.step} of "
                                  f"{progress.total_steps}, checkpoint saved: select it under "
                                  "Interrupted runs and press R to resume")
        else:
            progress.phase, progress.detail = "failed", "see the message above"
            self.banner.show_error(line or "the training run failed")
        self._redraw()
        self.action_refresh()

    # ---- shared -----------------------------------------------------------------------
    def _redraw(self) -> None:
        progress = self.progress
        self.query_one("#progress", Static).update(progress_text(progress, self.artifact))
        if progress is not None:
            self.query_one("#loss-plot", LinePlot).set_series({"train": progress.losses})
            self.query_one("#eval-plot", LinePlot).set_series(
                {"before -> after": progress.eval_losses})

    def job_event(self, job: str, event: dict[str, Any]) -> None:
        """An event of the training child."""
        if job == "train":
            self._train_event(event)

    def job_done(self, job: str, result: Any) -> None:
        """Choices read, a recipe checked, or the training child exited 0."""
        if job == "train":
            self._train_ended(True, result.output[-1] if result.output else "")
        elif job == "choices":
            self._fill_choices(result)
        elif job == "check":
            self._checked(result)

    def job_failed(self, job: str, line: str) -> None:
        """The run ended without an artifact; or stop the loading indicator; or mark a
        refused recipe (the banner says why)."""
        if job == "train":
            self._train_ended(False, line=line)
        elif job == "choices":
            self.query_one("#train-setup").loading = False
        elif job == "check":
            self.start_when_checked = False
            self.refusal_shown = True
            self.query_one("#effective", Static).update(
                Text("✗ refused: see the message above", style="red"))

    def busy(self) -> str | None:
        """The run in progress, for the quit question."""
        if not self.running:
            return None
        progress = self.progress or TrainProgress()
        return (f"training run {progress.run_id or '(starting)'} is at step {progress.step} "
                f"of {progress.total_steps or '?'}")

    def stop_work(self, *, force: bool = False) -> None:
        """Cancel the run cleanly (force: stop the child's process group at once)."""
        if not self.running:
            return
        if force and self.job is not None:
            self.job.kill()
        elif self.progress is not None and self.progress.cancellable:
            self.action_cancel()


def _recipe_defaults(choices: TrainingChoices, current: Any) -> tuple[str | None, str | None]:
    """The dataset and base model the chosen (or first) recipe names, if offered."""
    path = current if isinstance(current, str) else \
        (choices.recipes[0].path if choices.recipes else None)
    for recipe in choices.recipes:
        if recipe.path == path:
            return recipe.dataset, recipe.base_model
    return None, None
