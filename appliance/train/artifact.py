"""The run's output: `HOME/artifacts/<run-id>/` with the PEFT adapter, report.json,
metrics.jsonl and provenance.json, assembled in a staging directory and renamed into
place in one step.

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
                       "source_digest": model["source_digest"]},
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
