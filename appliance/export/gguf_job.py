"""The sandboxed side of `appliance export gguf` (job `"kind": "gguf"`): convert merged
safetensors weights (`mode` "model") or a LoRA adapter (`mode` "adapter") into a GGUF file
with `appliance.export.gguf_writer`, writing only into the staging directory the parent
made. The parent signs the result and moves it into place."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[..., None]


def run(job: dict[str, Any], emit: Emit) -> int:
    """Write job['out'] from job['source'] and emit `done` with what was written; a failure
    is reported by appliance.train.child as an `error` event."""
    from appliance.export import gguf_writer

    if job["mode"] == "model":
        wrote = gguf_writer.write_gguf(Path(job["source"]), Path(job["out"]), job["qtype"],
                                       job["name"])
    else:
        config = json.loads(Path(job["base_config"]).read_text("utf-8"))
        wrote = gguf_writer.write_lora_gguf(Path(job["source"]), config, Path(job["out"]),
                                            job["name"])
    # the writer's "type" (the tensor type) as gguf_type: an event's own "type" is its kind
    emit("done", gguf_type=wrote["type"],
         **{k: v for k, v in wrote.items() if k not in ("names", "type")})
    return 0
