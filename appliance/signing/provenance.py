"""The provenance statement of a signed artifact: an in-toto Statement v1 with an SLSA
Provenance v1 predicate. Digests, counts and settings only; never dataset text.

The training engineer passes a plain dict; recognised keys land where SLSA puts them:
- externalParameters: policy_digest, base_model, dataset, recipe, seeds, quantization, scrub
- internalParameters: isolation, offline, audit checkpoint (filled in here), hardware
- resolvedDependencies: base_model, dataset, tokenizer, pii_model ({name, digest} each),
  the lock file and the appliance's own source (filled in here)
- runDetails: run_id, started, finished, eval (as a byproduct)
Unknown keys are kept under externalParameters.extra.
"""

from __future__ import annotations

import hashlib
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.errors import SigningError
from appliance.patterns import find
from appliance.resources import PACKAGE_DIR, lock_file

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://appliance.local/buildtypes/qlora-adapter/v1"
BUILDER_ID = "https://appliance.local/builder/air-gapped-appliance"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors",
             "presidio-analyzer", "presidio-anonymizer", "spacy", "cryptography", "structlog",
             "pydantic")
EXTERNAL = ("policy_digest", "base_model", "dataset", "recipe", "seeds", "quantization", "scrub")
INTERNAL = ("isolation", "offline", "hardware")
DEPENDENCIES = ("base_model", "dataset", "tokenizer", "pii_model")
RUN = ("run_id", "started", "finished", "eval", "privacy")
BYPRODUCTS = ("eval", "privacy")  # privacy: the canary exposure check (issue 8)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape an artifact."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def source_digest(root: Path = PACKAGE_DIR) -> str:
    """sha256 over the appliance's own Python source (paths and bytes, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def lock_digest() -> str | None:
    """sha256 of vendor_wheels/requirements.lock, when present."""
    path = lock_file()
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path else None


def hardware() -> dict[str, Any]:
    """What this machine is (no host names or serial numbers)."""
    import os

    return {"machine": platform.machine(), "system": platform.system(),
            "python": platform.python_version(), "cpus": os.cpu_count()}


def _descriptor(name: str, value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict) or "digest" not in value:
        return None
    algo, _, hex_digest = str(value["digest"]).partition(":")
    return {"name": str(value.get("name", name)), "uri": f"appliance:{name}",
            "digest": {algo: hex_digest}}


def _check_clean(value: Any, path: str = "provenance") -> None:
    """Refuse anything that looks like PII or a secret: provenance holds digests only."""
    if isinstance(value, str):
        spans = find(value)
        if spans:
            raise SigningError(f"{path}: looks like {spans[0].entity}; provenance holds "
                               "digests, counts and settings only",
                               hint="pass digests or ids instead of text")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_clean(str(key), path)
            _check_clean(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_clean(item, f"{path}.{i}")


def build(subject: str, content_digest: str, info: dict[str, Any], *,
          checkpoint: dict[str, Any], signer: str) -> dict[str, Any]:
    """The provenance statement for an artifact whose content root digest is given."""
    _check_clean(info)
    external = {k: info[k] for k in EXTERNAL if k in info}
    extra = {k: v for k, v in info.items() if k not in (*EXTERNAL, *INTERNAL, *DEPENDENCIES,
                                                        *RUN)}
    if extra:
        external["extra"] = extra
    internal = {k: info[k] for k in INTERNAL if k in info}
    internal.setdefault("hardware", hardware())
    internal["audit_checkpoint"] = checkpoint
    internal["signer"] = signer
    internal["library_versions"] = library_versions()
    deps = [d for k in DEPENDENCIES if (d := _descriptor(k, info.get(k)))]
    lock = lock_digest()
    if lock:
        deps.append({"name": "requirements.lock", "uri": "appliance:lock",
                     "digest": {"sha256": lock.removeprefix("sha256:")}})
    deps.append({"name": "appliance", "uri": f"appliance:source@{__version__}",
                 "digest": {"sha256": source_digest().removeprefix("sha256:")}})
    metadata_ = {f"{k}On": info[k] for k in ("started", "finished") if k in info}
    if "run_id" in info:
        metadata_["invocationId"] = str(info["run_id"])
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject,
                     "digest": {"sha256": content_digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {"buildType": BUILD_TYPE, "externalParameters": external,
                                "internalParameters": internal,
                                "resolvedDependencies": deps},
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {"appliance": __version__}},
                "metadata": metadata_,
                "byproducts": [{"name": k, "annotations": info[k]} for k in BYPRODUCTS
                               if k in info],
            },
        },
    }
