"""The run's output: `HOME/artifacts/<run-id>/` with the PEFT adapter, report.json,
metrics.jsonl and provenance.json, assembled in a staging directory and renamed into
place in one step.

Integration point for signing (trust-primitives issue): `finalize_artifact()` calls
`appliance.signing.sign_artifact(home, policy, artifact_dir, provenance)` when that module
exists; until it is merged the artifact is written unsigned and the audit event says so.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import platform
import shutil
from pathlib import Path
from typing import Any

from appliance import __version__, offline
from appliance.fsutil import atomic_write_text, fsync_dir
from appliance.home import Home
from appliance.policy import Policy
from appliance.resources import lock_file

LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "safetensors", "accelerate",
             "cryptography", "pydantic")


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape the result."""
    from importlib import metadata

    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def hardware() -> dict[str, Any]:
    """The machine the run used (what determinism depends on)."""
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system(),
                            "python": platform.python_version(), "cpu_count": os.cpu_count(),
                            "processor": platform.processor()}
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover - torch is a dependency
        info["cuda"] = None
    return info


def lock_digest() -> str | None:
    """sha256 of the hash-pinned lock the installation came from."""
    path = lock_file()
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def provenance(*, run_id: str, policy_digest: str, model: dict[str, Any],
               dataset: dict[str, Any], recipe: dict[str, Any], isolation: str,
               evals: dict[str, Any], adapter_digest: str, audit_position: int) -> dict[str, Any]:
    """Digests, settings and versions that produced the adapter (never record text)."""
    return {
        "run_id": run_id, "appliance_version": __version__, "policy_digest": policy_digest,
        "base_model": model, "dataset": dataset, "recipe": recipe, "seed": recipe.get("seed"),
        "threads": recipe.get("threads"), "lock_digest": lock_digest(),
        "libraries": library_versions(), "hardware": hardware(),
        "isolation": {"network": isolation, "offline_env": sorted(offline.OFFLINE_ENV)},
        "eval": evals, "adapter_sha256": adapter_digest, "audit_log_position": audit_position,
    }


def signing_available() -> bool:
    """True once the trust-primitives `appliance.signing.sign_artifact` is merged."""
    return importlib.util.find_spec("appliance.signing") is not None


def finalize_artifact(home: Home, policy: Policy, staging: Path, target: Path,
                      prov: dict[str, Any]) -> bool:
    """Write provenance, sign if signing is available, and move the artifact into place.
    Returns whether it was signed."""
    atomic_write_text(staging / "provenance.json", json.dumps(prov, indent=2, sort_keys=True))
    signed = False
    if signing_available():
        from appliance import signing

        sign = getattr(signing, "sign_artifact", None)
        if sign is not None:
            sign(home, policy, staging, prov)
            signed = True
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    fsync_dir(target.parent)
    return signed
