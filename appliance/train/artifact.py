"""The run's output: `HOME/artifacts/<run-id>/` with the PEFT adapter, report.json,
metrics.jsonl and provenance.json, assembled in a staging directory and renamed into
place in one step.

The adapter is portable: `adapter_config.json` names the base model by its name (never a
path inside the home), the base model's tokenizer files and chat template travel with it,
and a Hugging Face model card (`README.md`, `appliance.train.modelcard`) describes it; all
of them are written before signing, so the signature covers them.

Signing happens in `finalize_artifact()`, which calls
`appliance.signing.sign_artifact(home, artifact_dir, passphrase, provenance)` before the
rename: an artifact directory never exists unsigned.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from appliance import __version__, offline
from appliance.fsutil import atomic_write_text, fsync_dir
from appliance.home import Home
from appliance.resources import lock_digest
from appliance.signing.provenance import library_versions

NVIDIA_PROC = Path("/proc/driver/nvidia/gpus")


def hardware() -> dict[str, Any]:
    """The machine the run used (what determinism depends on). The GPU's name comes from
    the NVIDIA driver's /proc files: this process never imports torch (the ML stack runs
    only in the sandbox)."""
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system(),
                            "python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "processor": platform.processor()}
    info["cuda"] = gpu_name()
    return info


def gpu_name(root: Path = NVIDIA_PROC) -> str | None:
    """The first NVIDIA GPU's model name, or None (no driver, or CUDA_VISIBLE_DEVICES="")."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return None
    for info in sorted(root.glob("*/information")):
        with contextlib.suppress(OSError):
            for line in info.read_text().splitlines():
                key, _, value = line.partition(":")
                if key.strip() == "Model" and value.strip():
                    return value.strip()
    return None


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "tokenizer.model", "vocab.json", "merges.txt",
                   "added_tokens.json")
"""The base model's files that make `AutoTokenizer.from_pretrained(ARTIFACT)` work, chat
template included, copied when the base has them."""

UPSTREAM = {"sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53":
            "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Hugging Face repositories of base models the appliance ships, by source digest (the
model card's `base_model`); any other base is named by its imported name."""


def base_model_info(record: Any) -> dict[str, Any]:
    """The base model as provenance records it: name, root and source digests, per-file
    digests, and its origin (format, and for a GGUF the file, its quantisation and the
    dequantisation that made the safetensors weights trained against)."""
    try:
        manifest = json.loads((record.path / "model.json").read_text("utf-8"))
    except (OSError, ValueError):
        manifest = {}
    origin = manifest.get("origin") or {"format": record.kind,
                                        "file": manifest.get("source_name")}
    info = {"name": record.name, "digest": record.root_digest,
            "source_digest": record.source_digest, "files": dict(record.files),
            "origin": origin}
    if record.source_digest in UPSTREAM:
        info["upstream"] = UPSTREAM[record.source_digest]
    return info


def make_portable(staging: Path, weights_dir: Path, model_name: str) -> list[str]:
    """Name the base model in `adapter_config.json` by `model_name` and copy the base
    model's tokenizer files beside the adapter; returns the files copied."""
    config_path = staging / "adapter_config.json"
    config = json.loads(config_path.read_text("utf-8"))
    config["base_model_name_or_path"] = model_name
    config["revision"] = None
    atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    copied = []
    for name in TOKENIZER_FILES:
        source = weights_dir / name
        if source.is_file() and not source.is_symlink():
            shutil.copyfile(source, staging / name)
            copied.append(name)
    return copied


def provenance(*, run_id: str, policy_digest: str, model: dict[str, Any],
               dataset: dict[str, Any], tokenizer_digest: str, recipe: dict[str, Any],
               isolation: str, evals: dict[str, Any], adapter_digest: str,
               started: str, finished: str) -> dict[str, Any]:
    """Digests, settings and versions that produced the adapter (never record text), keyed
    the way `appliance.signing.provenance.build` places them in SLSA Provenance v1."""
    return {
        "run_id": run_id, "started": started, "finished": finished,
        "policy_digest": policy_digest,
        "base_model": {"name": model["name"], "digest": model["root_digest"],
                       "source_digest": model["source_digest"],
                       **{k: model[k] for k in ("files", "origin", "upstream") if k in model}},
        "dataset": dataset,
        "tokenizer": {"name": f"{model['name']}/tokenizer.json", "digest": tokenizer_digest},
        "recipe": recipe, "seeds": {"seed": recipe.get("seed"), "threads": recipe.get("threads")},
        "quantization": {"method": recipe.get("method"), "quant_type": "nf4",
                         **dict(recipe.get("quantization") or {})},
        "isolation": {"network": isolation, "tripwire": "sys.addaudithook"},
        "offline": sorted(offline.OFFLINE_ENV),
        "hardware": hardware(), "eval": evals, "adapter_sha256": adapter_digest,
        "appliance_version": __version__, "lock_digest": lock_digest(),
        "libraries": library_versions(),
    }


def finalize_artifact(home: Home, staging: Path, target: Path, prov: dict[str, Any],
                      passphrase: bytes) -> None:
    """Write provenance, sign the directory (OpenSSF model-signing bundle and signed SLSA
    provenance, by appliance.signing) and move it into place in one rename. `staging` must
    have the same name as `target` (the name is the signed subject); its parent is removed
    when nothing else is staged there."""
    from appliance.signing import sign_artifact

    atomic_write_text(staging / "provenance.json", json.dumps(prov, indent=2, sort_keys=True))
    sign_artifact(home, staging, passphrase, prov)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    fsync_dir(target.parent)
    with contextlib.suppress(OSError):  # another run may be staging beside it
        staging.parent.rmdir()
