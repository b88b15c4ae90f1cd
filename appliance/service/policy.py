"""Policy operations for the CLI and TUI."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.errors import PolicyError
from appliance.policy import Policy, load_policy, policy_digest, schema_text


@dataclass(frozen=True)
class PolicyCheck:
    """The outcome of checking one policy file."""

    path: str
    ok: bool
    problems: list[str]
    digest: str | None
    name: str | None


def check_policy(path: str | Path) -> PolicyCheck:
    """Validate a policy file and collect every problem (never raises for bad content)."""
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        problems = exc.problems or [f"{path}: (file): {exc.message}"]
        return PolicyCheck(str(path), False, problems, None, None)
    return PolicyCheck(str(path), True, [], policy_digest(policy), policy.meta.name)


def hash_policy(path: str | Path) -> str:
    """`sha256:<hex>` of the canonical policy in `path` (raises PolicyError if invalid)."""
    return policy_digest(load_policy(path))


def read_policy(path: str | Path) -> Policy:
    """Load and validate a policy file."""
    return load_policy(path)


def schema() -> str:
    """The policy's JSON Schema as text."""
    return schema_text()
