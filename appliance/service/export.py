"""`appliance export merge`: base + adapter merged into plain safetensors weights, only when
the policy allows it and only after the artifact's signature verifies."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from appliance import audit
from appliance.errors import IntegrityError, PolicyViolation, TrainingError, UsageError
from appliance.fsutil import fsync_dir
from appliance.home import Home
from appliance.models import safety, store
from appliance.policy import Policy, load_policy
from appliance.service.policy import REFUSED_HINT


def require_merge_allowed(home: Home, policy: Policy, artifact: Path) -> None:
    """PolicyViolation (audited as a refused export) unless the policy allows merging."""
    if policy.export.merged_weights != "after-verify":
        audit.record(home, "export.merge", outcome="refused", artifact=artifact.name,
                     reason="policy")
        raise PolicyViolation("merged weights may not leave this appliance",
                              where="policy export.merged_weights = \"never\"",
                              hint=REFUSED_HINT)


def refuse_if_forbidden(home: Home, artifact: str | Path) -> None:
    """The console's `e` on an artifact: the same audited refusal `export merge` gives when
    the policy forbids merging; nothing when it allows it."""
    home.require_initialised()
    require_merge_allowed(home, load_policy(home.policy_file), Path(artifact))


def merge(home: Home, artifact: str | Path, out: str | Path) -> dict[str, Any]:
    """Verify `artifact`, then write merged weights (safetensors), config and tokenizer to
    `out` (which must not exist). Audited either way."""
    from appliance.service.artifacts import verified_copy

    home.require_initialised()
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    require_merge_allowed(home, policy, art)
    if dest.exists():
        raise UsageError("the output directory already exists", where=str(dest))
    with verified_copy(home, art) as (copy, result):
        if not result["ok"]:
            audit.record(home, "export.merge", outcome="refused", artifact=art.name,
                         reason="verify")
            raise IntegrityError("the artifact does not verify; nothing was merged",
                                 where=str(art), hint=str(result.get("reason", "")))
        prov = json.loads((copy / "provenance.json").read_text("utf-8"))
        wanted = prov["base_model"]["digest"]
        matches = [r for r in store.list_records(home) if r.root_digest == wanted]
        if not matches:
            raise UsageError(f"the base model {wanted} is not imported in this home",
                             where=str(art), hint="appliance model import it first")
        base = matches[0]
        store.require_allowed(policy, base)
        store.verify_weights(base)
        merged_digest = _merge_into(base.weights_dir, copy, dest)
    audit.record(home, "export.merge", artifact=art.name, base_model=base.root_digest,
                 adapter_sha256=prov.get("adapter_sha256"), merged_root_digest=merged_digest,
                 root_digest=result.get("root_digest"))
    return {"artifact": str(art), "out": str(dest), "base_model": base.name,
            "merged_root_digest": merged_digest}


def _merge_into(base_dir: Path, art: Path, dest: Path) -> str:
    """Check the adapter (safetensors only), merge in the sandbox into a staging directory
    beside `dest`, then move it into place atomically; the merged tree's digest."""
    from appliance.digests import tree_digest
    from appliance.train import isolation

    for path in art.iterdir():  # PEFT falls back to a pickle adapter_model.bin: refuse one
        safety.refuse_unsafe_name(path, art)
    if not (art / "adapter_model.safetensors").is_file():
        raise IntegrityError("the artifact has no adapter_model.safetensors", where=str(art))
    safety.check_safetensors(art / "adapter_model.safetensors")
    iso = isolation.require_isolation()
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent)).absolute()
    errors: list[str] = []

    def handle(event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            errors.append(str(event.get("message", "")))

    try:
        job = {"kind": "merge", "base_dir": str(base_dir.absolute()),
               "artifact": str(art.absolute()), "staging": str(staging)}
        spec = isolation.child_spec(read_only=(base_dir, art), writable=(staging,))
        result = isolation.run_isolated(job, handle, iso, spec=spec)
        if result.returncode != 0:
            why = errors[-1] if errors else f"the merging child exited with status " \
                                            f"{result.returncode}"
            raise TrainingError(f"the merge failed: {why}", where=str(art),
                                hint="run again with --debug to see the child's output")
        staging.rename(dest)
        fsync_dir(dest.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return tree_digest(dest)
