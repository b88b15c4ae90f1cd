"""The provenance statement of a signed artifact: an in-toto Statement v1 with an SLSA
Provenance v1 predicate. Digests, counts and settings only; never dataset text.

The training engineer passes a plain dict; recognised keys land where SLSA puts them:
- externalParameters: policy_digest, base_model, dataset, recipe, seeds, quantization, scrub
- internalParameters: isolation, offline, audit checkpoint (filled in here), hardware
- resolvedDependencies: base_model, dataset, tokenizer, pii_model, adapter (an export's
  source artifact) ({name, digest} each),
  the lock file and the appliance's own source (filled in here)
- runDetails: run_id, started, finished, eval (as a byproduct)
Unknown keys are kept under externalParameters.extra.
"""

from __future__ import annotations

import hashlib
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance import __version__
from appliance.errors import SigningError
from appliance.patterns import find
from appliance.resources import PACKAGE_DIR, lock_digest, lock_file

if TYPE_CHECKING:
    from appliance.audit.notes import CheckpointSummary

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
DOCS_URI = "https://appliance.local/"
"""The URIs below name documents in this repository: the path after this prefix is the
file's path from the repository root (`docs/buildtypes/...`); `appliance.local` is a
namespace, not a host to fetch from (the appliance is air-gapped)."""
BUILD_TYPE = DOCS_URI + "docs/buildtypes/qlora-adapter/v1.md"
BUILDER_ID = DOCS_URI + "docs/buildtypes/builder.md"
LIBRARIES = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "safetensors",
             "presidio-analyzer", "presidio-anonymizer", "spacy", "cryptography", "structlog",
             "pydantic")
EXTERNAL = ("policy_digest", "base_model", "dataset", "recipe", "seeds", "quantization", "scrub")
INTERNAL = ("isolation", "offline", "hardware")
DEPENDENCIES = ("base_model", "dataset", "tokenizer", "pii_model", "adapter")
RUN = ("run_id", "started", "finished", "eval", "privacy", "evaluation")
# privacy: the canary exposure check (docs/privacy.md); evaluation: the evaluation gates and
# the best checkpoint (docs/training.md)
BYPRODUCTS = ("eval", "privacy", "evaluation")


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


def subjects(files: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """SLSA subjects: every content file by its own path and sha256 (what `sha256sum`
    prints for it), so a standard in-toto verifier can match each file."""
    return [{"name": path, "digest": {"sha256": digest}} for path, digest in files]


def build(subject: str, content_digest: str, info: dict[str, Any], *,
          checkpoint: CheckpointSummary, signer: str,
          files: list[tuple[str, str]] | None = None,
          build_type: str = BUILD_TYPE) -> dict[str, Any]:
    """The provenance statement for an artifact's content: one subject per file when
    `files` (path, hex sha256) is given, else one subject for the content root digest
    (the form of artifacts signed before per-file subjects)."""
    _check_clean(info)
    external = {k: info[k] for k in EXTERNAL if k in info}
    extra = {k: v for k, v in info.items() if k not in (*EXTERNAL, *INTERNAL, *DEPENDENCIES,
                                                        *RUN)}
    if extra:
        external["extra"] = extra
    internal = {k: info[k] for k in INTERNAL if k in info}
    internal["audit_checkpoint"] = checkpoint
    internal["signer"] = signer
    internal["library_versions"] = library_versions()
    deps = [d for k in DEPENDENCIES if (d := _descriptor(k, info.get(k)))]
    lock, lock_path = lock_digest(), lock_file()
    if lock and lock_path:
        deps.append({"name": lock_path.name, "uri": "appliance:lock",
                     "digest": {"sha256": lock.removeprefix("sha256:")}})
    deps.append({"name": "appliance", "uri": f"appliance:source@{__version__}",
                 "digest": {"sha256": source_digest().removeprefix("sha256:")}})
    metadata_ = {f"{k}On": info[k] for k in ("started", "finished") if k in info}
    if "run_id" in info:
        metadata_["invocationId"] = str(info["run_id"])
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects(files) if files is not None else
        [{"name": subject, "digest": {"sha256": content_digest.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {"buildType": build_type, "externalParameters": external,
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


PRIVACY_SHOWN = ("verdict", "reasons", "method", "candidates", "resolution_bits",
                 "chance_mean_bits", "canary_set", "test", "test_top_repeats", "groups",
                 "extraction", "threshold")
"""The privacy byproduct's fields a verification returns (per-canary rows stay in the
statement: ids and numbers only, but many)."""


def _dependency(deps: list[Any], name: str) -> dict[str, Any] | None:
    """{name, digest} of a resolved dependency, found by its `appliance:` uri or name."""
    for dep in deps:
        if isinstance(dep, dict) and (dep.get("uri") == f"appliance:{name}"
                                      or dep.get("name") == name):
            digest = dep.get("digest") or {}
            algo, value = next(iter(digest.items())) if digest else ("", "")
            return {"name": dep.get("name"), "digest": f"{algo}:{value}" if algo else None}
    return None


def _code(statement: dict[str, Any], deps: list[Any],
          internal: dict[str, Any]) -> dict[str, Any]:
    """Which code built the artifact: appliance version and source digest, lock, libraries."""
    builder = statement["predicate"].get("runDetails", {}).get("builder", {})
    source = next((d for d in deps if isinstance(d, dict)
                   and str(d.get("uri", "")).startswith("appliance:source@")), None)
    lock = _dependency(deps, "lock")
    return {"appliance_version": (builder.get("version") or {}).get("appliance"),
            "source_digest": "sha256:" + source["digest"]["sha256"]
            if source and "sha256" in source.get("digest", {}) else None,
            "lock_digest": lock["digest"] if lock else None,
            "libraries": internal.get("library_versions")}


def summarize(statement: dict[str, Any]) -> dict[str, Any]:
    """What a verified provenance statement says, as plain data for `verify --json` and the
    console: inputs by digest, the code, the run, training settings and results, privacy."""
    build_def = statement["predicate"]["buildDefinition"]
    run = statement["predicate"].get("runDetails", {})
    external = build_def.get("externalParameters", {})
    internal = build_def.get("internalParameters", {})
    deps = build_def.get("resolvedDependencies") or []
    byproducts = {b.get("name"): b.get("annotations") for b in run.get("byproducts", [])
                  if isinstance(b, dict)}
    privacy = byproducts.get("privacy")
    meta = run.get("metadata", {})
    extra = external.get("extra") or {}
    return {
        "policy_digest": external.get("policy_digest"),
        "base_model": external.get("base_model"),
        "dataset": external.get("dataset"),
        "build_type": build_def.get("buildType"),
        "adapter": _dependency(deps, "adapter"),
        "tokenizer": _dependency(deps, "tokenizer"),
        "pii_model": _dependency(deps, "pii_model"),
        "audit_checkpoint": internal.get("audit_checkpoint"),
        "isolation": internal.get("isolation"),
        "run": {"run_id": meta.get("invocationId"), "started": meta.get("startedOn"),
                "finished": meta.get("finishedOn")},
        "recipe": external.get("recipe"),
        "quantization": external.get("quantization"),
        "eval": byproducts.get("eval"),
        "adapter_sha256": extra.get("adapter_sha256"),
        "code": _code(statement, deps, internal),
        "privacy": {k: privacy.get(k) for k in PRIVACY_SHOWN}
        if isinstance(privacy, dict) else None,
    }
