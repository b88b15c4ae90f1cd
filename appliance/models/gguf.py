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
from typing import Any

from appliance.errors import ModelFormatError

GGUF_MAGIC = b"GGUF"
SUPPORTED_ARCHITECTURES = frozenset({"llama"})


def check_gguf(path: Path) -> int:
    """Validate the GGUF magic and version; returns the version."""
    with open(path, "rb") as handle:
        head = handle.read(8)
    if len(head) < 8 or head[:4] != GGUF_MAGIC:
        raise ModelFormatError("not a GGUF file (bad magic)", where=str(path))
    (version,) = struct.unpack("<I", head[4:8])
    if version not in (2, 3):
        raise ModelFormatError(f"unsupported GGUF version {version}", where=str(path))
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
