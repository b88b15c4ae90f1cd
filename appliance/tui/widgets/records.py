"""A table of plain records (lists of dicts from the service layer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable


def cell(value: Any) -> str:
    """A value as one table cell: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


MAX_WIDTH = 80


def short_digest(digest: Any, hex_digits: int = 16) -> str:
    """`sha256:` and the first hex digits, for tables (panels show digests in full)."""
    text = str(digest or "")
    algo, sep, value = text.partition(":")
    if not sep or len(value) <= hex_digits:
        return text
    return f"{algo}:{value[:hex_digits]}…"


def human_size(count: Any) -> str:
    """Bytes as B, KiB, MiB or GiB."""
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _width(value: str | Text) -> int:
    return cell_len(value.plain if isinstance(value, Text) else value)


def set_rows(table: DataTable[Any], headers: Sequence[str],
             rows: Sequence[Sequence[str | Text]]) -> None:
    """Replace a table's columns and rows, each column as wide as its widest cell (at most
    MAX_WIDTH); string cells are shown as they are, never parsed as markup. Widths are set
    here rather than measured later by the table, whose deferred measuring can leave
    columns at their header's width on a busy machine."""
    table.clear(columns=True)
    for i, header in enumerate(headers):
        width = max([_width(header), *(_width(row[i]) for row in rows)])
        table.add_column(header, width=min(width, MAX_WIDTH))
    for row in rows:  # cells are data: a string is never read as Rich markup
        table.add_row(*(Text(value) if isinstance(value, str) else value for value in row))


class RecordsTable(DataTable[Any]):
    """Rows of dicts; the columns are the given keys, else every key in first-seen order."""

    def show(self, records: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> None:
        """Replace the table's content."""
        keys = list(columns) or list(dict.fromkeys(k for record in records for k in record))
        self.loading = False
        set_rows(self, keys, [[cell(record.get(key, "")) for key in keys] for record in records])
