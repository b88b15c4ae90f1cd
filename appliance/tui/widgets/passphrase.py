"""Modal prompts: a passphrase that never echoes, and a path."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label


class PassphraseModal(ModalScreen[bytes | None]):
    """Asks for a passphrase in a password field (shown as dots, never the text).

    Dismisses with the UTF-8 bytes, or None on Escape/Cancel. The field is cleared before
    the modal closes so the text does not outlive the prompt in the widget tree."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, *, allow_empty: bool = False) -> None:
        super().__init__()
        self.prompt = prompt
        self.allow_empty = allow_empty

    def compose(self) -> ComposeResult:
        """Prompt, password field, buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.prompt, classes="dialog-title")
            yield Input(password=True, placeholder="passphrase", id="passphrase")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter submits."""
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """OK submits, Cancel cancels."""
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without a passphrase."""
        self.query_one("#passphrase", Input).value = ""
        self.dismiss(None)

    def _submit(self) -> None:
        field = self.query_one("#passphrase", Input)
        secret = field.value.encode("utf-8")
        field.value = ""
        if not secret and not self.allow_empty:
            field.border_subtitle = "a passphrase is required (Escape cancels)"
            return
        self.dismiss(secret or None)


class PathModal(ModalScreen[str | None]):
    """Asks for a file or directory path; dismisses with it, or None on Escape/Cancel."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        """Prompt, path field, buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.prompt, classes="dialog-title")
            yield Input(value=self.value, placeholder="path", id="path")
            with Horizontal(classes="dialog-buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Enter submits."""
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """OK submits, Cancel cancels."""
        event.stop()
        if event.button.id == "ok":
            self._submit()
        else:
            self.action_cancel()

    def action_cancel(self) -> None:
        """Close without a path."""
        self.dismiss(None)

    def _submit(self) -> None:
        value = self.query_one("#path", Input).value.strip()
        if value:
            self.dismiss(value)
