"""Modal dialogs: a yes/no question, the text-field form they share, and the import forms
(dataset, base model). The passphrase and path prompts are forms too (`passphrase.py`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label


class ConfirmModal(ModalScreen[bool]):
    """Asks yes or no; dismisses with True only on the confirming button or `y`, False on
    the other button, `n` or Escape. The safe answer has the focus: Enter changes nothing."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "Cancel",
                 variant: Literal["error", "warning"] = "error") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.no = no
        self.variant = variant

    def compose(self) -> ComposeResult:
        """The question and two buttons."""
        with Vertical(classes="dialog", id="confirm"):
            yield Label(self.question, classes="dialog-title")
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.yes} (y)", variant=self.variant, id="yes")
                yield Button(f"{self.no} (n)", id="no")

    def on_mount(self) -> None:
        """Focus the answer that changes nothing."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """A button answers."""
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """A key answers."""
        self.dismiss(yes)


class FormModal(ModalScreen[Any]):
    """A dialog of text fields: Enter moves to the next field and submits from the last;
    Escape cancels. Subclasses compose the fields and build the result in `result()`."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "cancel", "Cancel")]

    def buttons(self) -> ComposeResult:
        """OK and Cancel."""
        with Horizontal(classes="dialog-buttons"):
            yield Button("OK", variant="primary", id="ok")
            yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter: the next empty field, else submit. (Subclasses change this through
        `submits_now`: Textual calls every class's handler, so they must not define their
        own.)"""
        event.stop()
        if self.submits_now(event.input):
            self._submit()
            return
        fields = list(self.query(Input))
        later = fields[fields.index(event.input) + 1:] if event.input in fields else []
        empty = [f for f in later if not f.value.strip() and not f.disabled]
        if empty:
            empty[0].focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """OK submits, Cancel cancels."""
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without a result."""
        self.dismiss(None)

    def submits_now(self, field: Input) -> bool:  # noqa: ARG002 - subclasses read `field`
        """Whether Enter in `field` submits at once (default: only from the last field)."""
        return False

    def complain(self, field_id: str, why: str) -> None:
        """Show why a field is not accepted, and put the cursor there."""
        field = self.query_one(field_id, Input)
        field.border_subtitle = why
        field.focus()

    def result(self) -> object | None:
        """The dialog's value, or None after `complain` when a field is not acceptable."""
        raise NotImplementedError

    def _submit(self) -> None:
        value = self.result()
        if value is not None:
            self.dismiss(value)


@dataclass(frozen=True)
class DatasetImport:
    """What the dataset import dialog asks."""

    file: str
    name: str
    canaries: bool


class DatasetImportModal(FormModal):
    """File and dataset name, and whether to plant privacy canaries."""

    def __init__(self, *, policy_plants: bool = False, check_before_signing: bool = False
                 ) -> None:
        super().__init__()
        self.policy_plants = policy_plants
        self.check_before_signing = check_before_signing

    def compose(self) -> ComposeResult:
        """Title, two fields, the canary option, buttons."""
        with Vertical(classes="dialog", id="dataset-import"):
            yield Label("Import a dataset into the vault (validated, deduplicated, scrubbed, "
                        "split and encrypted):", classes="dialog-title")
            yield Input(placeholder="file: JSONL or JSON array of Alpaca or chat records",
                        id="file")
            yield Input(placeholder="dataset name (letters, digits, . - _)", id="name")
            if self.policy_plants:
                note = "the policy plants privacy canaries at every import"
            elif self.check_before_signing:
                note = "plant privacy canaries (the policy checks exposure before signing)"
            else:
                note = "plant privacy canaries (for appliance privacy-check)"
            yield Checkbox(note, value=self.policy_plants or self.check_before_signing,
                           disabled=self.policy_plants, id="canaries")
            yield from self.buttons()

    def on_input_changed(self, event: Input.Changed) -> None:
        """Suggest the file's stem as the name while the name is empty or suggested."""
        event.input.border_subtitle = ""
        if event.input.id != "file":
            return
        name = self.query_one("#name", Input)
        suggested = getattr(self, "_suggested", "")
        if name.value in ("", suggested):
            stem = "".join(c if c.isalnum() or c in "._-" else "-"
                           for c in Path(event.value.strip()).stem)[:64].strip(".-_")
            self._suggested = stem
            name.value = stem

    def result(self) -> DatasetImport | None:
        """The request, or None (with a note on the field) when a field is empty."""
        file = self.query_one("#file", Input).value.strip()
        name = self.query_one("#name", Input).value.strip()
        if not file:
            self.complain("#file", "which file? (Escape cancels)")
            return None
        if not name:
            self.complain("#name", "a name is required")
            return None
        canaries = self.query_one("#canaries", Checkbox).value and not self.policy_plants
        return DatasetImport(str(Path(file).expanduser()), name, canaries)


@dataclass(frozen=True)
class ModelImport:
    """What the model import dialog asks: a path and name, or neither for the default."""

    path: str | None
    name: str | None

    @property
    def default(self) -> bool:
        """True for the embedded default model."""
        return self.path is None


class ModelImportModal(FormModal):
    """A model directory or GGUF file and its name; both empty for the embedded default."""

    def compose(self) -> ComposeResult:
        """Title, two fields, buttons."""
        with Vertical(classes="dialog", id="model-import"):
            yield Label("Import a base model (safetensors directory or GGUF file). Leave "
                        "the path empty for the embedded default, SmolLM2-135M-Instruct:",
                        classes="dialog-title")
            yield Input(placeholder="path (empty: the embedded default)", id="path")
            yield Input(placeholder="name in this home", id="name")
            yield from self.buttons()

    def on_input_changed(self, event: Input.Changed) -> None:
        """A new value clears the field's complaint."""
        event.input.border_subtitle = ""

    def submits_now(self, field: Input) -> bool:
        """Enter on an empty path: the default model at once."""
        return field.id == "path" and not field.value.strip()

    def result(self) -> ModelImport | None:
        """The request, or None (with a note) when a path is given without a name."""
        path = self.query_one("#path", Input).value.strip()
        name = self.query_one("#name", Input).value.strip()
        if not path:
            return ModelImport(None, name or None)
        if not name:
            self.complain("#name", "a name is required for a model from a path")
            return None
        return ModelImport(str(Path(path).expanduser()), name)
