"""Every dataset format read through the Hugging Face `datasets` library, into memory only:
JSONL, JSON arrays, Parquet, CSV and `datasets.save_to_disk` directories.

`datasets` normally materialises every file it loads as Arrow files in its cache
(`HF_DATASETS_CACHE`): plaintext records on disk. So nothing here goes through a dataset
builder: JSON lines are checked and parsed by the bounded reader (`appliance.intake.reader`:
strict UTF-8, nesting and size capped, each problem kept with its line number) and held as
an in-memory `datasets.Dataset` (`from_dict`, mixed-type fields as datasets' `Json` type, as
its JSON loader does); Parquet and CSV are parsed in memory (pyarrow, pandas) and wrapped in
an in-memory `datasets.Dataset`; a saved directory is opened with
`load_from_disk(keep_in_memory=True)`; caching is disabled before anything is read. Each row
becomes a `RawItem` numbered from 1 (its line for JSONL), so every problem names its line or
row. `datasets` is imported only when a file is read (the CLI's start-up never imports it;
it imports no torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.errors import DatasetFormatError
from appliance.intake.reader import MAX_FILE_BYTES, RawItem, read_items

TABULAR = {".parquet": "parquet", ".csv": "csv"}
JSON_COLUMNS = ("messages", "conversations")
"""CSV cells in these columns hold JSON (a list of turns) and are decoded."""
SAVED_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")
IN_MEMORY = True
"""Test-only switch: False loads through `datasets`' caching builders, which write the
records to HF_DATASETS_CACHE (tests/intake shows the canary scan then fails)."""


def kind_of(path: Path) -> str:
    """"jsonl" | "json" | "parquet" | "csv" | "datasets" (a save_to_disk directory)."""
    if path.is_dir() and not path.is_symlink():
        if any((path / marker).is_file() for marker in SAVED_MARKERS):
            return "datasets"
        raise DatasetFormatError("a directory that is not a datasets save_to_disk directory "
                                 "(no dataset_info.json or dataset_dict.json)", where=str(path))
    return TABULAR.get(path.suffix.lower(), "json")


def unit(kind: str) -> str:
    """What a RawItem's number counts in messages: "line" for JSONL, else "row"."""
    return "line" if kind == "jsonl" else "row"


def read_any(path: Path, max_record_bytes: int) -> tuple[str, list[RawItem]]:
    """(kind, items) for a dataset in any supported format."""
    kind = kind_of(path)
    if kind == "json":
        kind, items = read_items(path, max_record_bytes)
        return kind, _json_rows(path, items)
    rows = _load(path, kind)
    return kind, [_item(i, row, kind, max_record_bytes) for i, row in enumerate(rows, 1)]


def _datasets() -> Any:
    import datasets

    datasets.disable_caching()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    return datasets


def _size_check(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    if sum(p.stat().st_size for p in files) > MAX_FILE_BYTES:
        raise DatasetFormatError(f"larger than {MAX_FILE_BYTES} bytes", where=str(path))


def _load(path: Path, kind: str) -> list[dict[str, Any]]:
    """Every row as plain Python data, read in memory."""
    if not path.exists():
        raise DatasetFormatError("no such file", where=str(path))
    _size_check(path)
    datasets = _datasets()
    try:
        if kind == "datasets":
            loaded = datasets.load_from_disk(str(path), keep_in_memory=IN_MEMORY)
            parts = [loaded[s] for s in loaded] if isinstance(loaded, datasets.DatasetDict) \
                else [loaded]
            return [row for part in parts for row in part.to_list()]
        if not IN_MEMORY:  # the cached path the switch exists to demonstrate
            reader = datasets.Dataset.from_parquet if kind == "parquet" else \
                datasets.Dataset.from_csv
            return list(reader(str(path)).to_list())
        table = _parquet(path) if kind == "parquet" else _csv(path)
        return list(datasets.Dataset(datasets.table.InMemoryTable(table)).to_list())
    except DatasetFormatError:
        raise
    except Exception as exc:  # pyarrow, pandas and datasets raise many types for bad files
        raise DatasetFormatError(f"cannot read as {kind}: {type(exc).__name__}: "
                                 f"{_first_line(exc)}", where=str(path)) from None


def _json_rows(path: Path, items: list[RawItem]) -> list[RawItem]:
    """The items whose line parsed as a JSON object, passed through an in-memory
    `datasets.Dataset`; the others (their problem, or a non-object that validation names)
    kept as they are, so every line keeps its number."""
    datasets = _datasets()
    objects = [item for item in items if item.problem is None and isinstance(item.value, dict)]
    if not IN_MEMORY:  # the cached loader the switch exists to demonstrate
        rows: list[Any] = datasets.Dataset.from_json(str(path)).to_list()
    else:
        rows = _rows(datasets, [item.value for item in objects])
        if len(rows) != len(objects):  # never expected: refuse rather than misnumber lines
            raise DatasetFormatError(f"datasets returned {len(rows)} rows for "
                                     f"{len(objects)} records", where=str(path))
    by_line = {item.line: row for item, row in zip(objects, rows, strict=False)}
    out = []
    for item in items:
        row = by_line.get(item.line, item.value)
        if isinstance(row, _Unheld):
            out.append(RawItem(item.line, None, "unsupported value: datasets cannot hold "
                               f"this record ({row.reason})", item.size))
        elif item.line in by_line:
            out.append(RawItem(item.line, _unfill(row, item.value), None, item.size))
        else:
            out.append(item)
    return out


class _Unheld:
    """A record that `datasets` cannot hold (an integer beyond 64 bits...), with why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _rows(datasets: Any, values: list[dict[str, Any]]) -> list[Any]:
    """The values as rows of one in-memory Dataset (columns: every key of every value;
    a field whose type varies across rows becomes datasets' Json type, as its JSON loader
    does). Values it cannot hold are found by halving and become `_Unheld`."""
    if not values:
        return []
    columns: dict[str, None] = {}
    for value in values:
        columns.update(dict.fromkeys(value))
    if not columns:  # only empty objects: a table with no column has no rows
        return [{} for _ in values]
    import pyarrow as pa

    try:
        table = datasets.Dataset.from_dict({k: [v.get(k) for v in values] for k in columns},
                                           on_mixed_types="use_json")
        rows: list[Any] = table.to_list()
    except (pa.ArrowException, ValueError, TypeError, ArithmeticError) as exc:
        if len(values) == 1:
            return [_Unheld(f"{type(exc).__name__}: {_first_line(exc)}")]
        half = len(values) // 2
        return _rows(datasets, values[:half]) + _rows(datasets, values[half:])
    return rows


def _unfill(row: Any, source: Any) -> Any:
    """The row with the keys Arrow added (a column's null in rows that lacked the key) taken
    out again: exactly the source's keys, at every level, with the values datasets read."""
    if isinstance(row, dict) and isinstance(source, dict):
        return {k: _unfill(v, source[k]) for k, v in row.items() if k in source}
    if isinstance(row, list) and isinstance(source, list):
        return [_unfill(v, s) for v, s in zip(row, source, strict=False)]
    return row


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def _parquet(path: Path) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(str(path))


def _csv(path: Path) -> Any:
    """Every cell a string (no type guessing: "007" stays "007"), empty cells empty."""
    import pandas as pd
    import pyarrow as pa

    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return pa.Table.from_pandas(frame, preserve_index=False)


def _drop_nulls(value: Any) -> Any:
    """A Parquet null is an absent key (columns are the union of every row's keys)."""
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def _item(number: int, row: dict[str, Any], kind: str, max_bytes: int) -> RawItem:
    value = _drop_nulls(row)
    if kind == "csv":
        for column in JSON_COLUMNS:
            cell = value.get(column)
            if isinstance(cell, str) and cell.lstrip().startswith("["):
                try:
                    value[column] = json.loads(cell)
                except json.JSONDecodeError as exc:
                    return RawItem(number, None, f"bad JSON in column {column}: {exc.msg} "
                                   f"(column {exc.colno})", len(cell))
    size = len(json.dumps(value, ensure_ascii=False, default=str).encode("utf-8"))
    if size > max_bytes:
        return RawItem(number, None, f"record of {size} bytes exceeds the limit of "
                       f"{max_bytes} (policy intake.max_record_bytes)", size)
    return RawItem(number, value, None, size)
