"""Read a dataset file into raw items, one per line (JSONL) or per element (JSON array).

Per item problems (invalid UTF-8, bad JSON, oversize) are recorded with the line number
instead of raised, so validation can report every problem at once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import DatasetFormatError
from appliance.fsutil import ParseProblem, loads_json, read_regular

MAX_FILE_BYTES = 4 * 2**30


@dataclass(frozen=True)
class RawItem:
    """One record as read: its line number (1-based; element number for JSON arrays),
    the parsed value or the reason it could not be read, and its size in bytes."""

    line: int
    value: Any
    problem: str | None
    size: int


def _parse(line_no: int, raw: bytes, max_bytes: int) -> RawItem:
    if len(raw) > max_bytes:
        return RawItem(line_no, None, f"record of {len(raw)} bytes exceeds the limit of "
                       f"{max_bytes} (policy intake.max_record_bytes)", len(raw))
    try:
        value = loads_json(raw)
    except ParseProblem as exc:
        return RawItem(line_no, None, f"bad JSON: {exc}", len(raw))
    return RawItem(line_no, value, None, len(raw))


def read_items(path: Path, max_record_bytes: int) -> tuple[str, list[RawItem]]:
    """("jsonl" | "json", items) for the dataset at `path`; DatasetFormatError when the file
    as a whole cannot be read (missing, not a regular file, empty, a malformed JSON array)."""
    data = read_regular(path, max_bytes=MAX_FILE_BYTES, what="the dataset file",
                        error=DatasetFormatError)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise DatasetFormatError("the file is empty", where=str(path))
    if data.lstrip()[:1] == b"[":
        return "json", _read_array(path, data, max_record_bytes)
    items = []
    for i, raw in enumerate(data.split(b"\n"), start=1):
        if raw.strip():
            items.append(_parse(i, raw.rstrip(b"\r"), max_record_bytes))
    return "jsonl", items


def _read_array(path: Path, data: bytes, max_bytes: int) -> list[RawItem]:
    try:
        values = loads_json(data)
    except ParseProblem as exc:
        raise DatasetFormatError(f"bad JSON array: {exc}", where=str(path)) from None
    if not isinstance(values, list):
        raise DatasetFormatError("a JSON file must hold an array of records", where=str(path))
    items = []
    for i, value in enumerate(values, start=1):
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        if size > max_bytes:
            items.append(RawItem(i, None, f"record of {size} bytes exceeds the limit of "
                                 f"{max_bytes} (policy intake.max_record_bytes)", size))
        else:
            items.append(RawItem(i, value, None, size))
    return items
