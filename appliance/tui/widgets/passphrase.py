"""Modal prompts: a passphrase that never echoes, and a path (one-field forms)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Label

from appliance.tui.widgets.dialogs import FormModal


class PassphraseModal(FormModal):
    """Asks for a passphrase in a password field (shown as dots, never the text).

    Dismisses with the UTF-8 bytes (empty only with `allow_empty`), or None on
    Escape/Cancel. The field is cleared before
    the modal closes so the text does not outlive the prompt in the widget tree."""

    def __init__(self, prompt: str, *, allow_empty: bool = False) -> None:
        super().__init__()
        self.prompt = prompt
        self.allow_empty = allow_empty

    def compose(self) -> ComposeResult:
        """Prompt, password field, buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.prompt, classes="dialog-title")
            yield Input(password=True, placeholder="passphrase", id="passphrase")
            yield from self.buttons()

    def action_cancel(self) -> None:
        """Close without a passphrase (the field emptied first)."""
        self.query_one("#passphrase", Input).value = ""
        super().action_cancel()

    def result(self) -> bytes | None:
        """The passphrase's bytes; the field is emptied either way."""
        field = self.query_one("#passphrase", Input)
        secret = field.value.encode("utf-8")
        field.value = ""
        if not secret and not self.allow_empty:
            self.complain("#passphrase", "a passphrase is required (Escape cancels)")
            return None
        return secret


class PathModal(FormModal):
    """Asks for a file or directory path; dismisses with it, or None on Escape/Cancel."""

    def __init__(self, prompt: str, value: str = "") -> None:
        super().__init__()
        self.prompt = prompt
        self.value = value

    def compose(self) -> ComposeResult:
        """Prompt, path field, buttons."""
        with Vertical(classes="dialog"):
            yield Label(self.prompt, classes="dialog-title")
            yield Input(value=self.value, placeholder="path", id="path")
            yield from self.buttons()

    def result(self) -> str | None:
        """The path, or None (and a note on the field) when it is empty."""
        value = self.query_one("#path", Input).value.strip()
        if not value:
            self.complain("#path", "a path is required (Escape cancels)")
            return None
        return value
