"""A one-line banner for errors (and confirmations): never a traceback."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static


class Banner(Static):
    """Shows one line under the navigation bar; hidden while empty. Escape clears it."""

    DEFAULT_CSS = """
    Banner { display: none; height: auto; padding: 0 1; }
    Banner.-error { display: block; background: $error 30%; color: $text; }
    Banner.-info { display: block; background: $success 25%; color: $text; }
    """

    text = ""
    """The line shown now ('' when hidden)."""

    def show_error(self, line: str) -> None:
        """Show an error line (an ApplianceError's `.line()`: what, where, next step)."""
        self._show("-error", "✗ ", line)

    def show_info(self, line: str) -> None:
        """Show a confirmation line."""
        self._show("-info", "✓ ", line)

    def clear(self) -> None:
        """Hide the banner."""
        self.remove_class("-error", "-info")
        self.text = ""
        self.update("")

    def _show(self, kind: str, mark: str, line: str) -> None:
        self.remove_class("-error", "-info")
        self.add_class(kind)
        self.text = mark + _one_line(line)
        self.update(Text.assemble((mark, "bold"), _one_line(line)))


def _one_line(line: str) -> str:
    """Collapse white space so a message can never spread over several lines."""
    return " ".join(line.split())
