"""GGUF base models: a cheap header check, then a one-time conversion to safetensors.

transformers de-quantises the GGUF tensors (`gguf_file=`); the weights are copied into a
fresh `LlamaForCausalLM` built from the GGUF's config without its quantization_config, and
saved as safetensors with the tokenizer and chat template. The result is an ordinary model
directory that is validated like any other before it is used.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, BinaryIO

from appliance.errors import ModelFormatError
from appliance.fsutil import open_regular

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES = frozenset({"llama"})


MAX_KV = 1 << 16
"""Most metadata entries accepted (real files have a few dozen)."""
MAX_TENSORS = 1 << 20
MAX_STRING = 16 << 20
MAX_ARRAY = 1 << 24
MAX_ARRAY_DEPTH = 4
"""Deepest array-of-arrays nesting accepted in the metadata (real files use 1)."""
_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9


class _Reader:
    """Bounded little-endian reads over the GGUF header; every overrun is refused."""

    def __init__(self, handle: BinaryIO, size: int, where: str) -> None:
        self.handle, self.size, self.where = handle, size, where

    def bad(self, message: str) -> ModelFormatError:
        return ModelFormatError(f"malformed GGUF metadata: {message}", where=self.where,
                                hint="use an unmodified GGUF file (llama.cpp format v2/v3)")

    def take(self, n: int) -> bytes:
        if n > self.size - self.handle.tell():
            raise self.bad("a value runs past the end of the file")
        return self.handle.read(n)

    def number(self, fmt: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0])

    def skip(self, n: int) -> None:
        if n > self.size - self.handle.tell():
            raise self.bad("a value runs past the end of the file")
        self.handle.seek(n, os.SEEK_CUR)

    def string(self) -> bytes:
        length = self.number("Q")
        if length > MAX_STRING:
            raise self.bad(f"a string of {length} bytes")
        return self.take(length)

    def value(self, kind: int, depth: int = 0) -> None:
        if kind in _SCALARS:
            self.skip(_SCALARS[kind])
        elif kind == _STRING:
            self.string()
        elif kind == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.bad(f"arrays nested deeper than {MAX_ARRAY_DEPTH} levels")
            item, count = self.number("I"), self.number("Q")
            if count > MAX_ARRAY:
                raise self.bad(f"an array of {count} items")
            if item in _SCALARS:
                self.skip(count * _SCALARS[item])
            else:
                for _ in range(count):
                    self.value(item, depth + 1)
        else:
            raise self.bad(f"unknown value type {kind}")


def check_gguf(path: Path) -> int:
    """Validate the GGUF magic, version and the whole metadata section within bounds
    (counts, string and array sizes, nesting, nothing past the end of the file) before
    any parser sees it; returns the version."""
    where = str(path)
    with open_regular(path, error=ModelFormatError, what="the model file") as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(8)
        if len(head) < 8 or head[:4] != GGUF_MAGIC:
            raise ModelFormatError("not a GGUF file (bad magic)", where=where)
        (version,) = struct.unpack("<I", head[4:8])
        if version not in (2, 3):
            raise ModelFormatError(f"unsupported GGUF version {version}", where=where)
        reader = _Reader(handle, size, where)
        tensors, entries = reader.number("Q"), reader.number("Q")
        if tensors > MAX_TENSORS or entries > MAX_KV:
            raise reader.bad(f"{tensors} tensors and {entries} entries exceed the limits")
        for _ in range(entries):
            reader.string()
            reader.value(reader.number("I"))
    return int(version)


def gguf_origin(path: Path) -> dict[str, Any]:
    """What the GGUF file says about itself (file type, licence), recorded at import so a
    dequantised base model's provenance can say which quantisation it came from."""
    import gguf

    def field(key: str) -> Any:
        entry = reader.fields.get(key)
        if entry is None or not entry.data:
            return None
        part = entry.parts[entry.data[0]]
        return bytes(part).decode("utf-8", "replace") if entry.types[0] == \
            gguf.GGUFValueType.STRING else int(part[0])

    try:
        reader = gguf.GGUFReader(str(path))
        file_type = field("general.file_type")
        license_ = field("general.license")
    except (ValueError, KeyError, IndexError, OSError) as exc:
        raise ModelFormatError(f"GGUF metadata could not be read: {exc}", where=str(path)) \
            from None
    try:
        type_name = gguf.LlamaFileType(file_type).name if file_type is not None else None
    except ValueError:
        type_name = f"unknown({file_type})"
    return {"format": "gguf", "file": path.name, "file_type": type_name,
            "license": license_ if isinstance(license_, str) else None,
            "conversion": "dequantised to float32 safetensors (transformers "
                          f"{_version('transformers')}, gguf {_version('gguf')})"}


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Convert a GGUF file to a safetensors model directory at `out_dir` (must not exist)."""
    from appliance import offline

    offline.apply()
    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF reader uses bare tqdm
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    folder, name = str(gguf_path.parent), gguf_path.name
    try:
        config = AutoConfig.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    except Exception as exc:  # transformers raises many types for unreadable GGUF
        raise ModelFormatError(f"GGUF metadata could not be read: {type(exc).__name__}: "
                               f"{exc}", where=str(gguf_path)) from None
    if config.model_type not in SUPPORTED_ARCHITECTURES:
        raise ModelFormatError(f"GGUF architecture {config.model_type!r} is not supported "
                               f"(supported: {', '.join(sorted(SUPPORTED_ARCHITECTURES))})",
                               where=str(gguf_path))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                  trust_remote_code=False,
                                                  dtype=torch.float32)
    clean = config.to_dict()
    clean.pop("quantization_config", None)
    clean.pop("_name_or_path", None)
    clean.pop("_model_name_or_path", None)
    fresh_config = type(config).from_dict(clean)
    fresh = LlamaForCausalLM(fresh_config)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.tie_weights()
    out_dir.mkdir(parents=True)
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
