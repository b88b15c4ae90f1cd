"""`appliance export merge`: base + adapter merged into plain safetensors weights, only when
the policy allows it and only after the artifact's signature verifies."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from appliance import audit
from appliance.errors import IntegrityError, PolicyViolation, UsageError
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
    from appliance.service.artifacts import verify

    home.require_initialised()
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    require_merge_allowed(home, policy, art)
    if dest.exists():
        raise UsageError("the output directory already exists", where=str(dest))
    result = verify(home, art)
    if not result["ok"]:
        audit.record(home, "export.merge", outcome="refused", artifact=art.name,
                     reason="verify")
        raise IntegrityError("the artifact does not verify; nothing was merged",
                             where=str(art), hint=str(result.get("reason", "")))
    prov = json.loads((art / "provenance.json").read_text("utf-8"))
    wanted = prov["base_model"]["digest"]
    matches = [r for r in store.list_records(home) if r.root_digest == wanted]
    if not matches:
        raise UsageError(f"the base model {wanted} is not imported in this home",
                         where=str(art), hint="appliance model import it first")
    base = matches[0]
    store.require_allowed(policy, base)
    store.verify_weights(base)
    merged_digest = _merge_into(base.weights_dir, art, dest)
    audit.record(home, "export.merge", artifact=art.name, base_model=base.root_digest,
                 adapter_sha256=prov.get("adapter_sha256"), merged_root_digest=merged_digest)
    return {"artifact": str(art), "out": str(dest), "base_model": base.name,
            "merged_root_digest": merged_digest}


def _merge_into(base_dir: Path, art: Path, dest: Path) -> str:
    """Load base (full precision) + adapter (safetensors only), merge, save atomically."""
    from appliance import offline

    offline.apply()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from appliance.digests import tree_digest

    model: Any = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32,
                                                 trust_remote_code=False, use_safetensors=True)
    for path in art.iterdir():  # PEFT falls back to a pickle adapter_model.bin: refuse one
        safety.refuse_unsafe_name(path, art)
    if not (art / "adapter_model.safetensors").is_file():
        raise IntegrityError("the artifact has no adapter_model.safetensors", where=str(art))
    safety.check_safetensors(art / "adapter_model.safetensors")
    adapted: Any = PeftModel.from_pretrained(model, str(art), is_trainable=False)
    merged = adapted.merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir), trust_remote_code=False)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        staging.rename(dest)
        fsync_dir(dest.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return tree_digest(dest)
