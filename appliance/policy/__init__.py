"""The declarative policy: a strict, documented, frozen model loaded from TOML."""

from appliance.policy.document import (
    Policy,
    canonical_bytes,
    legacy_digest,
    load_policy,
    parse_policy_text,
    policy_digest,
    policy_schema,
    schema_text,
    validate_policy,
)

__all__ = [
    "Policy",
    "canonical_bytes",
    "legacy_digest",
    "load_policy",
    "parse_policy_text",
    "policy_digest",
    "policy_schema",
    "schema_text",
    "validate_policy",
]
