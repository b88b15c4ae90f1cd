"""Canary scanning: prove that given secrets appear in no file under some directories.

A canary is searched for in the encodings a leak could take: UTF-8, UTF-16 (LE/BE), UTF-32
(LE/BE) and JSON's ASCII escaping. Files are read in overlapping blocks, so a canary that
spans a block boundary is still found.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

BLOCK = 1 << 20


@dataclass(frozen=True)
class Hit:
    """A canary found in a file, in one encoding."""

    path: Path
    canary: str
    encoding: str


def forms(canary: str) -> dict[str, bytes]:
    """The byte strings a canary could be stored as."""
    found = {enc: canary.encode(enc) for enc in ("utf-8", "utf-16-le", "utf-16-be",
                                                   "utf-32-le", "utf-32-be")}
    escaped = json.dumps(canary)[1:-1].encode("ascii")
    if escaped != found["utf-8"]:
        found["json-escaped"] = escaped
    return found


def _files(roots: Iterable[Path]) -> Iterable[Path]:
    for given in roots:
        root = Path(given)
        if root.is_file() and not root.is_symlink():
            yield root
            continue
        for dirpath, _dirs, names in os.walk(root, followlinks=False):
            for name in names:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    yield path


def scan(roots: Iterable[str | Path], canaries: Iterable[str]) -> list[Hit]:
    """Every (file, canary, encoding) where a canary occurs in a regular file under `roots`."""
    needles = [(c, enc, raw) for c in canaries for enc, raw in forms(c).items()]
    keep = max((len(raw) for _, _, raw in needles), default=1) - 1
    hits: list[Hit] = []
    for path in _files(Path(r) for r in roots):
        seen: set[tuple[str, str]] = set()
        try:
            with open(path, "rb") as handle:
                tail = b""
                while block := handle.read(BLOCK):
                    window = tail + block
                    for canary, enc, raw in needles:
                        if (canary, enc) not in seen and raw in window:
                            seen.add((canary, enc))
                            hits.append(Hit(path, canary, enc))
                    tail = window[-keep:] if keep else b""
        except OSError:
            continue
    return hits
