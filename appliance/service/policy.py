"""Policy operations for the CLI and TUI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from pydantic import BaseModel

from appliance import trust
from appliance.errors import PolicyError
from appliance.home import Home
from appliance.policy import Policy, load_policy, policy_digest, schema_text
from appliance.resources import shipped_policy


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


# --- the active policy, described and compared (for the TUI's Policy screen) --------------
@dataclass(frozen=True)
class ActivePolicy:
    """The policy in force for a home and where it comes from."""

    policy: Policy
    path: Path
    source: str
    """`home` (the home's active.toml) or `shipped default` (no home yet)."""

    @property
    def name(self) -> str:
        """The policy's meta.name."""
        return self.policy.meta.name

    @property
    def digest(self) -> str:
        """`sha256:<hex>` of the canonical policy."""
        return policy_digest(self.policy)


@dataclass(frozen=True)
class PolicyEntry:
    """One leaf of the effective policy: dotted key, value as shown, the field's docstring."""

    key: str
    value: str
    doc: str


@dataclass(frozen=True)
class PolicyChange:
    """One dotted key whose effective value differs between two policies."""

    key: str
    old: str
    new: str


ABSENT = "(absent)"


def active_policy(home: Home) -> ActivePolicy:
    """The home's active policy when the home is initialised, else the shipped default."""
    if home.is_initialised():
        trust.require_home(home)  # a hand-edited active policy is refused, not shown
        return ActivePolicy(load_policy(home.policy_file), home.policy_file, "home")
    path = shipped_policy("default")
    return ActivePolicy(load_policy(path), path, "shipped default")


REFUSED_HINT = 'an admin can set it to "after-verify"'
"""What to do when the policy forbids merged weights (export.merged_weights)."""


class MergePermission(TypedDict):
    """Whether the active policy lets merged weights leave, and why."""

    allowed: bool
    setting: str
    reason: str


class PolicyApplied(TypedDict):
    """`policy apply --json`."""

    old_digest: str
    new_digest: str
    name: str
    changes: list[dict[str, Any]]


def merge_permission(home: Home) -> MergePermission:
    """Whether the active policy lets merged weights leave (`export.merged_weights`), with
    the setting and a readable reason; for the console, which shows it before asking."""
    trust.require_home(home)
    setting = load_policy(home.policy_file).export.merged_weights
    allowed = setting == "after-verify"
    reason = ("allowed after the artifact verifies" if allowed else
              f"merged weights may not leave this appliance ({REFUSED_HINT})")
    return {"allowed": allowed, "setting": setting,
            "reason": f'policy export.merged_weights = "{setting}": {reason}'}


def _show(value: Any) -> str:
    """A value as compact JSON (strings quoted, lists inline), as TOML would spell it."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """dotted key -> leaf value; tables recurse, lists are leaves."""
    if isinstance(data, dict) and data:
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: data}


def _doc_of(model: type[BaseModel], key: str) -> str:
    """The docstring of the field at dotted `key`, following nested sections."""
    doc = ""
    current: Any = model
    for part in key.split("."):
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return doc
        info = fields[part]
        doc = info.description or ""
        current = info.annotation
    return doc


def describe_policy(policy: Policy) -> list[PolicyEntry]:
    """Every effective setting of `policy` (defaults filled in), in schema order."""
    flat = _flatten(policy.model_dump(mode="json"))
    return [PolicyEntry(key, _show(value), _doc_of(Policy, key)) for key, value in flat.items()]


def _as_policy(item: str | Path | Policy) -> Policy:
    return item if isinstance(item, Policy) else load_policy(item)


def diff_policies(a: str | Path | Policy, b: str | Path | Policy) -> list[PolicyChange]:
    """Every dotted key whose effective value differs from `a` to `b` (old -> new).

    Both sides are compared with defaults filled in, so writing a default out or omitting it
    is no change. Lists compare as whole values; a key present on one side only shows
    `(absent)` on the other."""
    old = _flatten(_as_policy(a).model_dump(mode="json"))
    new = _flatten(_as_policy(b).model_dump(mode="json"))
    changes = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key in old and key in new and old[key] == new[key]:
            continue
        changes.append(PolicyChange(key, _show(old[key]) if key in old else ABSENT,
                                    _show(new[key]) if key in new else ABSENT))
    return changes


# --- changing the active policy (`appliance policy apply FILE`) ----------------------------
def plan_apply(home: Home, path: str | Path) -> tuple[Policy, list[PolicyChange], bool]:
    """Validate `path` and what applying it would change (from the active file), and
    whether the active file was edited by hand (that is what apply repairs; everything
    else is checked as usual)."""
    from appliance import manifest, trust

    trust.require_home(home, allow_policy_change=True)
    new = load_policy(path)
    edited = not trust.policy_as_recorded(home, manifest.read(home).body.policy_digest)
    return new, diff_policies(load_policy(home.policy_file), new), edited


def apply_policy(home: Home, path: str | Path, passphrase: bytes) -> PolicyApplied:
    """Make `path` the active policy: the passphrase opens the home (manifest checked), the
    old and new digests are audited and the manifest records the new one."""
    from appliance import audit, manifest, trust
    from appliance.fsutil import atomic_write_bytes

    new, changes, _ = plan_apply(home, path)
    raw = Path(path).read_bytes()
    current = load_policy(home.policy_file)
    trust.unlock(home, passphrase, current, allow_policy_change=True)
    recorded = manifest.read(home).body.policy_digest
    new_digest = policy_digest(new)
    atomic_write_bytes(home.policy_file, raw, 0o600)
    if load_policy(home.policy_file) != new:
        raise PolicyError("the copied policy differs from its source", where=str(path))
    trust.update(home, policy_digest=new_digest)
    audit.record(home, "policy.applied", old_digest=recorded, new_digest=new_digest,
                 policy_name=new.meta.name, changed_keys=len(changes))
    return {"old_digest": recorded, "new_digest": new_digest, "name": new.meta.name,
            "changes": [vars(c) for c in changes]}
