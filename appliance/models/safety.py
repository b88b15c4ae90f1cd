"""Checks that run before any parser opens a model file.

Pickle weights and custom code are refused by name before anything is read; the
safetensors header is validated by hand (8-byte length, bounded JSON, known dtypes, offsets
inside the file, no overlap, sizes that match the shapes) so that a crafted file gives a
ModelFormatError instead of a crash or an out-of-memory in a native parser.
"""

from __future__ import annotations

import math
import os
import struct
from pathlib import Path
from typing import Any

from appliance.errors import ModelFormatError
from appliance.fsutil import ParseProblem, loads_json, open_regular, read_regular

PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib"})
"""Weight formats that execute code when loaded; refused before parsing."""
CODE_SUFFIXES = frozenset({".py", ".pyc", ".so", ".sh"})
"""Custom code a repository could ask to run (`trust_remote_code`); refused."""
MAX_HEADER_BYTES = 16 * 2**20
"""Largest safetensors JSON header accepted (upstream allows 100 MB; real headers are KBs)."""
MAX_JSON_BYTES = 32 * 2**20
"""Largest config/tokenizer JSON file read during checks."""
DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}


def refuse_unsafe_name(path: Path, where: Path) -> None:
    """Raise ModelFormatError if `path` is a pickle weight file or custom code."""
    suffix = path.suffix.lower()
    rel = path.relative_to(where) if path != where and path.is_relative_to(where) else path
    if suffix in PICKLE_SUFFIXES:
        raise ModelFormatError(f"pickle weight file refused: {rel}", where=str(where),
                               hint="convert the model to safetensors; pickle can run code "
                                    "when loaded")
    if suffix in CODE_SUFFIXES:
        raise ModelFormatError(f"custom code refused: {rel}", where=str(where),
                               hint="models that need their own code are never loaded "
                                    "(trust_remote_code is always False)")


def read_json_bounded(path: Path) -> Any:
    """Parse a small JSON file (a regular file, size- and depth-capped, duplicate keys
    refused)."""
    raw = read_regular(path, max_bytes=MAX_JSON_BYTES, what="the JSON file",
                       error=ModelFormatError)
    try:
        return loads_json(raw, unique_keys=True)
    except ParseProblem as exc:
        raise ModelFormatError(f"not valid JSON: {exc}", where=str(path)) from None


def check_config(path: Path) -> dict[str, Any]:
    """Validate config.json: a JSON object, no `auto_map` (custom code)."""
    config = read_json_bounded(path)
    if not isinstance(config, dict):
        raise ModelFormatError("config.json is not a JSON object", where=str(path))
    if "auto_map" in config:
        raise ModelFormatError("config.json has auto_map (custom code) and is refused",
                               where=str(path),
                               hint="trust_remote_code is always False; use a model whose "
                                    "architecture transformers implements")
    return config


def check_safetensors(path: Path) -> dict[str, Any]:
    """Validate a safetensors file's header without a native parser; returns the header."""
    where = str(path)
    with open_regular(path, error=ModelFormatError, what="the model file") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size < 8:
            raise ModelFormatError("safetensors file shorter than its 8-byte header length",
                                   where=where)
        (n,) = struct.unpack("<Q", handle.read(8))
        if n > MAX_HEADER_BYTES:
            raise ModelFormatError(f"safetensors header of {n} bytes exceeds the "
                                   f"{MAX_HEADER_BYTES}-byte cap", where=where)
        if 8 + n > size:
            raise ModelFormatError(f"safetensors header length {n} runs past the end of the "
                                   f"file ({size} bytes)", where=where)
        raw = handle.read(n)
    try:
        header = loads_json(raw, unique_keys=True)
    except ParseProblem as exc:
        raise ModelFormatError(f"safetensors header is not valid JSON: {exc}",
                               where=where) from None
    if not isinstance(header, dict):
        raise ModelFormatError("safetensors header is not a JSON object", where=where)
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in info.items()):
                raise ModelFormatError("safetensors __metadata__ must map strings to strings",
                                       where=where)
            continue
        spans.append(_tensor_span(name, info, data_len, where))
    spans.sort()
    end = 0
    for start, stop, name in spans:
        if start < end:
            raise ModelFormatError(f"safetensors tensor {name!r} overlaps another tensor",
                                   where=where)
        end = stop
    return header


def _tensor_span(name: str, info: Any, data_len: int, where: str) -> tuple[int, int, str]:
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise ModelFormatError(f"safetensors tensor {name!r} has a malformed entry",
                               where=where)
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise ModelFormatError(f"safetensors tensor {name!r} has unknown dtype {dtype!r}",
                               where=where)
    if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ModelFormatError(f"safetensors tensor {name!r} has a malformed shape",
                               where=where)
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
        raise ModelFormatError(f"safetensors tensor {name!r} has malformed data_offsets",
                               where=where)
    start, stop = offsets
    if not 0 <= start <= stop <= data_len:
        raise ModelFormatError(f"safetensors tensor {name!r} data_offsets [{start}, {stop}] "
                               f"fall outside the {data_len}-byte data section", where=where)
    if stop - start != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise ModelFormatError(f"safetensors tensor {name!r} size does not match its shape "
                               "and dtype", where=where)
    return start, stop, name


def scan_model_dir(root: Path) -> list[Path]:
    """Check a Hugging Face model directory before anything parses it; returns its files.

    Refuses symlinks, pickle weights and custom code by name first, then config.json's
    auto_map, then validates every safetensors header.
    """
    if not root.is_dir():
        raise ModelFormatError("not a directory", where=str(root))
    files: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for dname in dirnames:
            if (base / dname).is_symlink():
                raise ModelFormatError(f"symbolic link refused: {(base / dname).relative_to(root)}",
                                       where=str(root))
        for fname in filenames:
            path = base / fname
            if path.is_symlink() or not path.is_file():
                raise ModelFormatError(f"not a regular file: {path.relative_to(root)}",
                                       where=str(root))
            refuse_unsafe_name(path, root)
            files.append(path)
    config = root / "config.json"
    if not config.is_file():
        raise ModelFormatError("config.json is missing", where=str(root),
                               hint="a Hugging Face model directory needs config.json")
    check_config(config)
    weights = sorted(p for p in files if p.suffix == ".safetensors")
    if not weights:
        raise ModelFormatError("no *.safetensors weights found", where=str(root))
    for path in weights:
        check_safetensors(path)
    return sorted(files)
