"""Artifact verification for the CLI and TUI (`appliance verify DIR`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.home import Home


def trusted_keys(home: Home, policy_path: str | Path | None = None) -> set[str]:
    """Fingerprints the policy trusts: its `signing.trusted_keys`, plus the home's own
    signing key when `signing.trust_home_key` is set."""
    from appliance import keys
    from appliance.policy import load_policy

    if policy_path is None:
        home.require_initialised()
    policy = load_policy(policy_path if policy_path is not None else home.policy_file)
    trusted = set(policy.signing.trusted_keys)
    if policy.signing.trust_home_key and home.is_initialised():
        trusted.add(keys.fingerprint(keys.signing_public_key(home)))
    return trusted


def verify(home: Home, artifact: str | Path, policy_path: str | Path | None = None
           ) -> dict[str, Any]:
    """Verify `artifact`; records `artifact.verified` when the home exists."""
    from appliance import audit
    from appliance.signing import verify_artifact

    result = verify_artifact(artifact, trusted_keys(home, policy_path))
    if home.is_initialised():
        audit.record(home, "artifact.verified", outcome="ok" if result.ok else "failed",
                     artifact=Path(artifact).name, root_digest=result.root_digest or None,
                     signer=result.signer or None, reason=result.reason)
    return result.as_dict()


def list_artifacts(home: Home) -> list[dict[str, Any]]:
    """Artifact directories, newest first: run id, modification time (UTC), signed or not
    (a signature file is present; `verify`/`describe` check it)."""
    from appliance.service.overview import latest_runs

    return [{"run": r.run_id, "modified (UTC)": r.modified, "signed": "yes" if r.signed
             else "no"} for r in latest_runs(home, limit=10_000)]


def describe(home: Home, artifact: str | Path) -> dict[str, Any]:
    """`verify` plus what the console shows beside it: the active policy's digest (to
    compare with the one the artifact was trained under) and whether the policy lets
    merged weights be exported."""
    from appliance.service.policy import active_policy, merge_permission

    result = verify(home, artifact)
    result["active_policy_digest"] = active_policy(home).digest
    result["export"] = merge_permission(home)
    result["total_steps"] = _total_steps(Path(artifact)) if result["ok"] else None
    return result


def _total_steps(artifact: Path) -> int | None:
    """Optimizer steps the run took, from its report.json (a signed file: read only after
    the artifact verified); None when absent or unreadable."""
    import json

    try:
        steps = json.loads((artifact / "report.json").read_text("utf-8")).get("total_steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None
