"""The sandboxed side of `appliance export merge` (job `"kind": "merge"`): load the base
model in full precision and the adapter (safetensors only, no remote code), merge them and
save the merged weights and the tokenizer into the staging directory the parent made, the
one directory this child may write. The parent checked the adapter's files, renames the
staging directory into place and digests it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

Emit = Callable[..., None]


def run(job: dict[str, Any], emit: Emit) -> int:
    """Merge job['base_dir'] + job['artifact'] into job['staging']; 0, or 1 after `error`."""
    # a failure is reported by appliance.train.child as an `error` event
    merge(Path(job["base_dir"]), Path(job["artifact"]), Path(job["staging"]))
    emit("merged", staging=job["staging"])
    return 0


def merge(base_dir: Path, art: Path, staging: Path) -> None:
    """Base (float32) + adapter, merged and saved as safetensors with the tokenizer."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32,
                                                      trust_remote_code=False,
                                                      use_safetensors=True)
    adapted: Any = PeftModel.from_pretrained(model, str(art), is_trainable=False)
    merged = adapted.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), trust_remote_code=False)
    merged.save_pretrained(str(staging), safe_serialization=True)
    tokenizer.save_pretrained(str(staging))
