"""A table of plain records (lists of dicts from the service layer)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable


def cell(value: Any) -> str:
    """A value as one table cell: strings as they are, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class RecordsTable(DataTable[str]):
    """Rows of dicts; the columns are the given keys, else every key in first-seen order."""

    def show(self, records: Sequence[dict[str, Any]], columns: Sequence[str] = ()) -> None:
        """Replace the table's content."""
        keys = list(columns) or list(dict.fromkeys(k for record in records for k in record))
        self.clear(columns=True)
        self.loading = False
        if not keys:
            return
        self.add_columns(*keys)
        for record in records:
            self.add_row(*(cell(record.get(key, "")) for key in keys))
