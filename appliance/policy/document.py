"""The policy document: one TOML file that governs every area of the appliance."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import rfc8785
from pydantic import Field, ValidationError

from appliance.errors import PolicyError
from appliance.fsutil import ParseProblem, decode_utf8, loads_toml, read_regular
from appliance.policy._base import Name, Section
from appliance.policy.audit import AuditPolicy
from appliance.policy.evaluation import EvaluationPolicy
from appliance.policy.export import ExportPolicy
from appliance.policy.intake import IntakePolicy
from appliance.policy.models import ModelsPolicy
from appliance.policy.network import NetworkPolicy
from appliance.policy.pii import KNOWN_ENTITIES, PiiPolicy
from appliance.policy.privacy import PrivacyPolicy
from appliance.policy.signing import SigningPolicy
from appliance.policy.storage import StoragePolicy
from appliance.policy.training import TrainingPolicy

SCHEMA_VERSION = 1
MAX_POLICY_BYTES = 1 << 20
"""Largest policy file read (the shipped ones are a few KiB)."""


class Meta(Section):
    """What this policy is."""

    name: Name
    """Short name shown to operators and recorded in provenance."""
    description: str = ""
    """Free text for people."""
    schema_version: Literal[1] = 1
    """Version of the policy schema this file is written against."""


class Policy(Section):
    """The appliance policy. Every section is optional; an omitted section takes the strict
    production defaults documented here."""

    meta: Meta
    """Name, description and schema version of this policy (required)."""
    pii: PiiPolicy = Field(default_factory=PiiPolicy)
    """PII detection and scrubbing."""
    intake: IntakePolicy = Field(default_factory=IntakePolicy)
    """Dataset validation, deduplication and split."""
    storage: StoragePolicy = Field(default_factory=StoragePolicy)
    """Encryption at rest."""
    network: NetworkPolicy = Field(default_factory=NetworkPolicy)
    """Network isolation."""
    models: ModelsPolicy = Field(default_factory=ModelsPolicy)
    """Allowed base models and how they load."""
    training: TrainingPolicy = Field(default_factory=TrainingPolicy)
    """Training methods and limits."""
    audit: AuditPolicy = Field(default_factory=AuditPolicy)
    """The audit log."""
    signing: SigningPolicy = Field(default_factory=SigningPolicy)
    """Artifact signatures and trusted keys."""
    privacy: PrivacyPolicy = Field(default_factory=PrivacyPolicy)
    """Canary exposure check of trained adapters."""
    evaluation: EvaluationPolicy = Field(default_factory=EvaluationPolicy)
    """Early stopping and the evaluation limits checked before signing."""
    export: ExportPolicy = Field(default_factory=ExportPolicy)
    """What may leave the appliance."""


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(err: Any) -> str:
    """A readable message for one pydantic error, with the offending value where useful."""
    if err["type"] == "extra_forbidden":
        return "unknown key (not in the policy schema)"
    if err["type"] == "missing":
        return "required key is missing"
    value = err.get("input")
    if isinstance(value, dict | list) or value is None:
        return str(err["msg"])
    return f"{err['msg']} (got {type(value).__name__} {value!r})"


def _semantic_problems(policy: Policy) -> list[tuple[str, str]]:
    """Cross-field rules the field types alone cannot express."""
    problems: list[tuple[str, str]] = []
    known = set(KNOWN_ENTITIES)
    for i, entity in enumerate(policy.pii.entities):
        if entity not in known:
            problems.append((f"pii.entities.{i}", f"unknown entity type {entity!r}"))
    if len(set(policy.pii.entities)) != len(policy.pii.entities):
        problems.append(("pii.entities", "entity types are listed more than once"))
    for key in ("operators", "max_residual"):
        for entity in getattr(policy.pii, key):
            if entity not in policy.pii.entities:
                problems.append((f"pii.{key}.{entity}", "entity type is not in pii.entities"))
    for entity, count in policy.pii.max_residual.items():
        if count < 0:
            problems.append((f"pii.max_residual.{entity}", "must be >= 0"))
    training = policy.training
    if training.eval_fraction < training.min_eval_fraction:
        problems.append(("training.eval_fraction",
                         f"below training.min_eval_fraction ({training.min_eval_fraction})"))
    digests = [m.digest for m in policy.models.allowed]
    if len(set(digests)) != len(digests):
        problems.append(("models.allowed", "a digest is listed more than once"))
    caps, params = policy.storage.kdf_max, policy.storage.argon2id
    for field in ("memory_kib", "iterations", "lanes"):
        if getattr(params, field) > getattr(caps, field):
            problems.append((f"storage.argon2id.{field}", f"above storage.kdf_max.{field}"))
    return problems


def validate_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    """Validate parsed policy data, raising one PolicyError that lists every problem."""
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = [f"{source}: {_dotted(err['loc'])}: {_message(err)}" for err in exc.errors()]
        raise PolicyError(f"{len(problems)} problem(s) in the policy", where=source,
                          problems=problems) from None
    semantic = _semantic_problems(policy)
    if semantic:
        problems = [f"{source}: {key}: {msg}" for key, msg in semantic]
        raise PolicyError(f"{len(problems)} problem(s) in the policy", where=source,
                          problems=problems)
    return policy


def parse_policy_text(text: str, source: str = "<policy>") -> Policy:
    """Parse and validate policy TOML text."""
    try:
        data = loads_toml(text)
    except ParseProblem as exc:
        raise PolicyError("not valid TOML", where=source,
                          problems=[f"{source}: (toml): {exc}"]) from None
    return validate_policy(data, source)


def load_policy(path: str | Path) -> Policy:
    """Read, parse and validate a policy file (a regular file of at most MAX_POLICY_BYTES)."""
    path = Path(path)
    raw = read_regular(path, max_bytes=MAX_POLICY_BYTES, what="the policy file",
                       error=PolicyError)
    try:
        text = decode_utf8(raw)
    except ParseProblem:
        raise PolicyError("the policy file is not UTF-8", where=str(path),
                          problems=[f"{path}: (toml): not valid UTF-8"]) from None
    return parse_policy_text(text, str(path))


def canonical_bytes(policy: Policy) -> bytes:
    """What the policy sets, as RFC 8785 canonical JSON: every value that differs from this
    appliance's default (a default written out is left out, as if omitted). The defaults
    themselves belong to the code, which provenance binds by version and digest, so a later
    version that adds a key with a default leaves the digest of an existing file as it was."""
    return bytes(rfc8785.dumps(policy.model_dump(mode="json", exclude_defaults=True)))


def policy_digest(policy: Policy) -> str:
    """`sha256:<hex>` of the canonical policy: comments, key order and white space in the
    file, whether a default is written out or omitted, and keys that later versions add with
    a default, do not change it."""
    return "sha256:" + hashlib.sha256(canonical_bytes(policy)).hexdigest()


def legacy_digest(policy: Policy) -> str:
    """The digest earlier builds of the appliance recorded: over the policy with every
    default filled in (so it changed whenever a version added a key). Only the trust layer
    uses it, so that a home those builds made is not refused after an upgrade; `policy
    apply` records the current form."""
    return "sha256:" + hashlib.sha256(rfc8785.dumps(policy.model_dump(mode="json"))).hexdigest()


def policy_schema() -> dict[str, Any]:
    """The policy's JSON Schema."""
    return Policy.model_json_schema()


def schema_text() -> str:
    """The JSON Schema as stable, pretty-printed text (what `appliance policy schema` prints)."""
    return json.dumps(policy_schema(), indent=2, sort_keys=True) + "\n"
