"""Help: every page and key, over the current page."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from appliance.tui.screens.base import NAV

PAGE_KEYS: dict[str, list[tuple[str, str]]] = {
    "Overview": [("r", "re-read home, policy, keys, audit log, runs"),
                 ("d", "run the doctor's readiness checks again")],
    "Policy": [("c", "compare the active policy with another policy file"),
               ("r", "reload the active policy")],
    "Datasets": [("i", "import a file: live progress, then the scrub report"),
                 ("s", "scrub report of the selected one (also enter)"),
                 ("b", "browse its scrubbed records, decrypted in memory"),
                 ("d", "remove it (asks first; its key is destroyed)"),
                 ("x", "cancel a running import"), ("r", "reload the list")],
    "Models": [("i", "import a directory or GGUF (empty path: default)"),
               ("r", "reload the list")],
    "Train": [("s", "start: policy check, passphrase, then training"),
              ("c", "cancel: the run checkpoints at the next step"),
              ("R", "resume the selected interrupted run"),
              ("r", "reload datasets, models, recipes and runs"),
              ("enter", "open the focused list (dataset, model, recipe)")],
    "Artifacts": [("v", "verify the selected one, show provenance (enter)"),
                  ("e", "export merged weights, if the policy allows it"),
                  ("p", "run the privacy (canary exposure) check"),
                  ("r", "reload the list")],
    "Audit": [("/", "filter events: words, or action=… outcome=… key=value"),
              ("v", "verify the chain against its signed checkpoints"),
              ("e", "export the auditor's bundle"), ("r", "reload")],
    "Try": [("p", "type a prompt; enter: base and adapter answer side by side"),
            ("x", "cancel the answer being generated"), ("r", "reload the artifacts")],
}


def help_table() -> Table:
    """Global keys, then each page's keys."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right")
    table.add_column()
    for key, _mode, label in NAV:
        table.add_row(key, f"go to {label}")
    for key, what in (("?", "this help"), ("escape", "clear a message, close a dialog"),
                      ("tab", "move between fields"), ("q", "quit")):
        table.add_row(key, what)
    for page, keys in PAGE_KEYS.items():
        table.add_row("", "")
        table.add_row("", f"[bold]{page}[/]")
        for key, what in keys:
            table.add_row(key, what)
    return table


class HelpScreen(ModalScreen[None]):
    """The key reference; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[Binding | tuple[str, str] | tuple[str, str, str]]] = [
        Binding("escape,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        """The table in a dialog."""
        with VerticalScroll(classes="dialog", id="help") as box:
            box.border_title = "Keys"
            yield Static(help_table())

    def action_close(self) -> None:
        """Back to the page."""
        self.dismiss(None)
