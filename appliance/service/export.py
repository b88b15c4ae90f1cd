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
from appliance.export import signed
from appliance.fsutil import fsync_dir
from appliance.home import Home
from appliance.models import safety, store
from appliance.policy import Policy, load_policy, policy_digest

REFUSED_HINT = 'an admin can set it to "after-verify"'


def merge_permission(home: Home) -> dict[str, Any]:
    """Whether the active policy lets merged weights leave (`export.merged_weights`), with
    the setting and a readable reason; for the console, which shows it before asking."""
    home.require_initialised()
    setting = load_policy(home.policy_file).export.merged_weights
    allowed = setting == "after-verify"
    reason = ("allowed after the artifact verifies" if allowed else
              f"merged weights may not leave this appliance ({REFUSED_HINT})")
    return {"allowed": allowed, "setting": setting,
            "reason": f'policy export.merged_weights = "{setting}": {reason}'}


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


def merge(home: Home, artifact: str | Path, out: str | Path,
          passphrase_file: str | None = None) -> dict[str, Any]:
    """Verify `artifact`, then write merged weights (safetensors), config and tokenizer to
    `out` (which must not exist), signed like an artifact with provenance naming the
    adapter artifact's root digest (`appliance.export.signed`). Audited either way."""
    home.require_initialised()
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    result, prov, base = _verified_inputs(home, policy, art, dest, "export.merge")
    from appliance.passphrase import read_passphrase

    passphrase = read_passphrase(passphrase_file)  # before the (long) merge, not after it
    with signed.staged(dest) as staging:
        merged_digest = _merge_into(base.weights_dir, art, staging)
        info = signed.export_provenance(
            kind="merge", artifact=art, verified=result, policy_digest=policy_digest(policy),
            output={"weights_root_digest": merged_digest, "dtype": "float32",
                    "format": "safetensors"})
        sig = signed.sign_and_place(home, staging, dest, info, passphrase,
                                    signed.MERGED_BUILD_TYPE)
    audit.record(home, "export.merge", artifact=art.name, base_model=base.root_digest,
                 adapter_sha256=prov.get("adapter_sha256"), merged_root_digest=merged_digest,
                 root_digest=sig["root_digest"], adapter_root_digest=result["root_digest"])
    return {"artifact": str(art), "out": str(dest), "base_model": base.name,
            "merged_root_digest": merged_digest, "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


def _verified_inputs(home: Home, policy: Policy, art: Path, dest: Path, action: str
                     ) -> tuple[dict[str, Any], dict[str, Any], store.ModelRecord]:
    """Policy gate, fresh output, verified artifact, its base model imported and intact:
    (verification result, the artifact's provenance, the base model record)."""
    from appliance.service.artifacts import verify

    require_merge_allowed(home, policy, art)
    if dest.exists():
        raise UsageError("the output already exists", where=str(dest))
    result = verify(home, art)
    if not result["ok"]:
        audit.record(home, action, outcome="refused", artifact=art.name, reason="verify")
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
    return result, prov, base


def export_gguf(home: Home, artifact: str | Path, out: str | Path, qtype: str = "f16",
                passphrase_file: str | None = None) -> dict[str, Any]:
    """Verify `artifact`, merge it into its base model, and write the merged model as one
    GGUF file (`model.gguf`, F16 or Q8_0) with an Ollama `Modelfile` into the new directory
    `out`, signed like an artifact (build type gguf-export/v1). Gated like `export merge`
    (merged weights leave the appliance). Audited either way."""
    from appliance.export import gguf_writer
    from appliance.passphrase import read_passphrase

    home.require_initialised()
    if qtype not in gguf_writer.TYPES:
        raise UsageError(f"unknown GGUF type {qtype!r}", where="--type",
                         hint=f"one of {', '.join(gguf_writer.TYPES)}")
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    result, _, base = _verified_inputs(home, policy, art, dest, "export.gguf")
    passphrase = read_passphrase(passphrase_file)
    with signed.staged(dest) as staging:
        merged = staging.parent / ".merged-float32"  # never dest's name: staging has it
        merged_digest = _merge_into(base.weights_dir, art, merged)
        staging.mkdir()
        wrote = gguf_writer.write_gguf(merged, staging / "model.gguf", qtype,
                                       f"{base.name}-{art.name}")
        shutil.rmtree(merged)
        (staging / "Modelfile").write_text(gguf_writer.modelfile(
            "model.gguf", f"ollama create NAME -f Modelfile (signed export of {art.name})"))
        info = signed.export_provenance(
            kind="gguf", artifact=art, verified=result, policy_digest=policy_digest(policy),
            output={"merged_root_digest": merged_digest, "gguf_type": qtype,
                    "tensors": wrote["tensors"], "format": "gguf"})
        sig = signed.sign_and_place(home, staging, dest, info, passphrase,
                                    signed.GGUF_BUILD_TYPE)
    audit.record(home, "export.gguf", artifact=art.name, base_model=base.root_digest,
                 adapter_root_digest=result["root_digest"], root_digest=sig["root_digest"],
                 gguf_type=qtype)
    return {"artifact": str(art), "out": str(dest), "gguf": str(dest / "model.gguf"),
            "type": qtype, "tensors": wrote["tensors"], "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


def export_gguf_adapter(home: Home, artifact: str | Path, out: str | Path,
                        passphrase_file: str | None = None) -> dict[str, Any]:
    """Verify `artifact` and write its LoRA adapter as a llama.cpp GGUF adapter
    (`adapter.gguf`, F32) with an Ollama `Modelfile` (`ADAPTER ./adapter.gguf` on a base
    GGUF) into the new directory `out`, signed like an artifact. No merged weights leave,
    so `export.merged_weights` does not apply; audited as `export.gguf`."""
    from appliance.export import gguf_writer
    from appliance.passphrase import read_passphrase
    from appliance.service.artifacts import verify

    home.require_initialised()
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    if dest.exists():
        raise UsageError("the output already exists", where=str(dest))
    result = verify(home, art)
    if not result["ok"]:
        audit.record(home, "export.gguf", outcome="refused", artifact=art.name,
                     reason="verify")
        raise IntegrityError("the artifact does not verify; nothing was written",
                             where=str(art), hint=str(result.get("reason", "")))
    for path in art.iterdir():
        safety.refuse_unsafe_name(path, art)
    safety.check_safetensors(art / "adapter_model.safetensors")
    prov = json.loads((art / "provenance.json").read_text("utf-8"))
    matches = [r for r in store.list_records(home)
               if r.root_digest == prov["base_model"]["digest"]]
    if not matches:
        raise UsageError("the base model is not imported in this home", where=str(art),
                         hint="appliance model import it first (its config is needed)")
    base_config = json.loads((matches[0].weights_dir / "config.json").read_text("utf-8"))
    passphrase = read_passphrase(passphrase_file)
    with signed.staged(dest) as staging:
        staging.mkdir()
        wrote = gguf_writer.write_lora_gguf(art, base_config, staging / "adapter.gguf",
                                            f"{matches[0].name}-{art.name}-lora")
        (staging / "Modelfile").write_text(gguf_writer.adapter_modelfile(
            "adapter.gguf", f"ollama create NAME -f Modelfile (signed adapter of {art.name})"))
        info = signed.export_provenance(
            kind="gguf-adapter", artifact=art, verified=result,
            policy_digest=policy_digest(policy),
            output={"gguf_type": wrote["type"], "tensors": wrote["tensors"],
                    "rank": wrote["rank"], "alpha": wrote["alpha"], "format": "gguf-lora"})
        sig = signed.sign_and_place(home, staging, dest, info, passphrase,
                                    signed.GGUF_BUILD_TYPE)
    audit.record(home, "export.gguf", artifact=art.name, adapter_root_digest=result["root_digest"],
                 root_digest=sig["root_digest"], gguf_type="lora")
    return {"artifact": str(art), "out": str(dest), "gguf": str(dest / "adapter.gguf"),
            "type": wrote["type"], "tensors": wrote["tensors"], "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


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
