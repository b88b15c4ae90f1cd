"""The sandboxed side of `appliance model import` for a GGUF file (child job `"kind":
"convert"` of appliance.train.child): read what the file says about itself and convert it
to a safetensors model directory with transformers. The sandbox sees the copied source
file read-only and writes only into the conversion directory the parent made inside the
import's staging directory; the parent re-validates the result, digests it and records it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[..., None]


def run(job: dict[str, Any], emit: Emit) -> int:
    """Convert job['source'] into job['out'] (which must not exist yet) and emit `done`
    with the file's origin; a failure is reported by appliance.train.child as `error`."""
    from appliance.models.gguf import convert_gguf, gguf_origin

    source = Path(job["source"])
    origin = gguf_origin(source)
    convert_gguf(source, Path(job["out"]))
    emit("done", origin=origin)
    return 0
