"""`appliance export merge`: base + adapter merged into plain safetensors weights, only when
the policy allows it and only after the artifact's signature verifies."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from appliance import audit, trust
from appliance.errors import IntegrityError, PolicyViolation, TrainingError, UsageError
from appliance.export import signed
from appliance.fsutil import fsync_dir
from appliance.home import Home
from appliance.models import safety, store
from appliance.passphrase import Passphrase, resolve
from appliance.policy import Policy, load_policy, policy_digest
from appliance.service.policy import REFUSED_HINT

if TYPE_CHECKING:
    from appliance.service.artifacts import Verified


class MergeResult(TypedDict):
    """`export merge --json` (docs/interface.md)."""

    artifact: str
    out: str
    base_model: str
    merged_root_digest: str
    root_digest: str
    adapter_root_digest: str
    signer: str
    signed: bool


class GgufResult(TypedDict):
    """`export gguf --json`: the model (`type` F16/Q8_0) or, with --adapter-only, the
    LoRA adapter (`type` of its tensors)."""

    artifact: str
    out: str
    gguf: str
    type: str
    tensors: int
    root_digest: str
    adapter_root_digest: str
    signer: str
    signed: bool


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
    trust.require_home(home)
    require_merge_allowed(home, load_policy(home.policy_file), Path(artifact))


def merge(home: Home, artifact: str | Path, out: str | Path,
          passphrase: Passphrase) -> MergeResult:
    """Verify a private copy of `artifact`, then write merged weights (safetensors), config
    and tokenizer to `out` (which must not exist), signed like an artifact with provenance
    naming the adapter artifact's root digest (`appliance.export.signed`). The merge runs
    in the sandbox and reads only the verified copy. Audited either way."""
    trust.require_home(home)
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    with _verified_inputs(home, policy, art, dest, "export.merge") as (copy, result, prov, base):
        secret = resolve(passphrase)  # before the (long) merge, not after
        with signed.staged(dest) as staging:
            merged_digest = _merge_into(base.weights_dir, copy, staging)
            info = signed.export_provenance(
                kind="merge", artifact=art, verified=result,
                policy_digest=policy_digest(policy),
                output={"weights_root_digest": merged_digest, "dtype": "float32",
                        "format": "safetensors"})
            sig = signed.sign_and_place(home, staging, dest, info, secret,
                                        signed.MERGED_BUILD_TYPE)
    audit.record(home, "export.merge", artifact=art.name, base_model=base.root_digest,
                 adapter_sha256=prov.get("adapter_sha256"), merged_root_digest=merged_digest,
                 root_digest=sig["root_digest"], adapter_root_digest=result["root_digest"])
    return {"artifact": str(art), "out": str(dest), "base_model": base.name,
            "merged_root_digest": merged_digest, "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


@contextmanager
def _verified_inputs(home: Home, policy: Policy, art: Path, dest: Path, action: str, *,
                     gate: bool = True
                     ) -> Iterator[tuple[Path, Verified, dict[str, Any], store.ModelRecord]]:
    """Policy gate (merged weights leave: `gate`), fresh output, a verified private copy of
    the artifact, its base model imported, allowed and intact: yields (the copy, the
    verification result, the copy's provenance, the base model record). Callers read only
    the copy, so a swap of the original after verification changes nothing."""
    from appliance.service.artifacts import verified_copy

    if gate:
        require_merge_allowed(home, policy, art)
    for path in (signed.file_outputs(dest, (MODELFILE,)) if _single(dest) else [dest]):
        if path.exists() or path.is_symlink():
            raise UsageError("the output already exists", where=str(path))
    with verified_copy(home, art) as (copy, result):
        if not result["ok"]:
            audit.record(home, action, outcome="refused", artifact=art.name, reason="verify")
            raise IntegrityError("the artifact does not verify; nothing was written",
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
        _check_adapter_files(copy)
        yield copy, result, prov, base


MODELFILE = ".Modelfile"
"""The suffix of the Ollama Modelfile beside a single-file GGUF export (NAME.gguf.Modelfile)."""


def _single(dest: Path) -> bool:
    """`--out NAME.gguf` asks for a single signed file (else `--out DIR`, a directory)."""
    return dest.suffix.lower() == ".gguf"


def _place_gguf(home: Home, staging: Path, dest: Path, gguf_name: str,
                modelfile: Callable[[str, str], str], info: dict[str, Any],
                passphrase: bytes) -> tuple[Path, dict[str, Any]]:
    """Sign and place a GGUF export built in the directory `staging` (the GGUF as
    `gguf_name`): as the directory `dest` with a `Modelfile`, or, for `--out NAME.gguf`, as
    that file with NAME.gguf.Modelfile and its signature files beside it. (the GGUF's final
    path, the signing result). `modelfile(gguf name, Modelfile name)` is its text."""
    if not _single(dest):
        (staging / "Modelfile").write_text(modelfile(gguf_name, "Modelfile"))
        return dest / gguf_name, signed.sign_and_place(home, staging, dest, info, passphrase,
                                                       signed.GGUF_BUILD_TYPE)
    files = staging.parent / ".signed"
    files.mkdir()
    (staging / gguf_name).rename(files / dest.name)
    signed.companion(files / dest.name, MODELFILE).write_text(
        modelfile(dest.name, dest.name + MODELFILE))
    return dest, signed.sign_and_place_file(home, files, dest, (MODELFILE,), info, passphrase,
                                            signed.GGUF_BUILD_TYPE)


def export_gguf(home: Home, artifact: str | Path, out: str | Path, qtype: str = "f16", *,
                passphrase: Passphrase) -> GgufResult:
    """Verify a private copy of `artifact`, merge it into its base model, and write the
    merged model as one GGUF file (F16 or Q8_0) with an Ollama Modelfile, signed like an
    artifact (build type gguf-export/v1): into the new directory `out` (`model.gguf`,
    `Modelfile`), or, when `out` ends in `.gguf`, as that file with `NAME.gguf.Modelfile`
    and its signature files beside it (`appliance.signing.sign_file`). The merge and the
    conversion run in the sandbox. Gated like `export merge` (merged weights leave the
    appliance). Audited either way."""
    from appliance.export import gguf_writer
    trust.require_home(home)
    if qtype not in gguf_writer.TYPES:
        raise UsageError(f"unknown GGUF type {qtype!r}", where="--type",
                         hint=f"one of {', '.join(gguf_writer.TYPES)}")
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    with _verified_inputs(home, policy, art, dest, "export.gguf") as (copy, result, _, base):
        secret = resolve(passphrase)
        with signed.staged(dest) as staging:
            merged = staging.parent / ".merged-float32"  # never dest's name: staging has it
            merged_digest = _merge_into(base.weights_dir, copy, merged)
            staging.mkdir()
            wrote = _in_sandbox({"kind": "gguf", "mode": "model", "source": str(merged),
                                 "out": str(staging / "model.gguf"), "qtype": qtype,
                                 "name": f"{base.name}-{art.name}"},
                                read_only=(merged,), writable=(staging,), where=art)
            shutil.rmtree(merged)
            info = signed.export_provenance(
                kind="gguf", artifact=art, verified=result, policy_digest=policy_digest(policy),
                output={"merged_root_digest": merged_digest, "gguf_type": qtype,
                        "tensors": wrote["tensors"], "format": "gguf"})
            gguf, sig = _place_gguf(
                home, staging, dest, "model.gguf", lambda name, mf: gguf_writer.modelfile(
                    name, f"ollama create NAME -f {mf} (signed export of {art.name})"),
                info, secret)
    audit.record(home, "export.gguf", artifact=art.name, base_model=base.root_digest,
                 adapter_root_digest=result["root_digest"], root_digest=sig["root_digest"],
                 gguf_type=qtype)
    return {"artifact": str(art), "out": str(dest), "gguf": str(gguf),
            "type": qtype, "tensors": wrote["tensors"], "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


def export_gguf_adapter(home: Home, artifact: str | Path, out: str | Path,
                        passphrase: Passphrase) -> GgufResult:
    """Verify a private copy of `artifact` and write its LoRA adapter as a llama.cpp GGUF
    adapter (F32) with an Ollama Modelfile (`ADAPTER ./...gguf` on a base GGUF), signed like
    an artifact: into the new directory `out` (`adapter.gguf`, `Modelfile`) or, when `out`
    ends in `.gguf`, as that file with its Modelfile and signatures beside it; the
    conversion runs in the sandbox. No merged weights leave, so `export.merged_weights`
    does not apply; audited as `export.gguf`."""
    from appliance.export import gguf_writer
    trust.require_home(home)
    policy = load_policy(home.policy_file)
    art, dest = Path(artifact), Path(out)
    with _verified_inputs(home, policy, art, dest, "export.gguf", gate=False) as (
            copy, result, _, base):
        secret = resolve(passphrase)
        with signed.staged(dest) as staging:
            staging.mkdir()
            wrote = _in_sandbox({"kind": "gguf", "mode": "adapter", "source": str(copy),
                                 "base_config": str(base.weights_dir / "config.json"),
                                 "out": str(staging / "adapter.gguf"),
                                 "name": f"{base.name}-{art.name}-lora"},
                                read_only=(copy, base.weights_dir), writable=(staging,),
                                where=art)
            info = signed.export_provenance(
                kind="gguf-adapter", artifact=art, verified=result,
                policy_digest=policy_digest(policy),
                output={"gguf_type": wrote["gguf_type"], "tensors": wrote["tensors"],
                        "rank": wrote["rank"], "alpha": wrote["alpha"], "format": "gguf-lora"})
            gguf, sig = _place_gguf(
                home, staging, dest, "adapter.gguf", lambda name, mf: gguf_writer.adapter_modelfile(
                    name, f"ollama create NAME -f {mf} (signed adapter of {art.name})"),
                info, secret)
    audit.record(home, "export.gguf", artifact=art.name, adapter_root_digest=result["root_digest"],
                 root_digest=sig["root_digest"], gguf_type="lora")
    return {"artifact": str(art), "out": str(dest), "gguf": str(gguf),
            "type": wrote["gguf_type"], "tensors": wrote["tensors"],
            "root_digest": sig["root_digest"],
            "adapter_root_digest": result["root_digest"], "signer": sig["signer"],
            "signed": True}


def _check_adapter_files(art: Path) -> None:
    """The adapter is safetensors only: PEFT falls back to a pickle adapter_model.bin, and
    any unsafe file name is refused before a child loads anything."""
    for path in art.iterdir():
        safety.refuse_unsafe_name(path, art)
    if not (art / "adapter_model.safetensors").is_file():
        raise IntegrityError("the artifact has no adapter_model.safetensors", where=str(art))
    safety.check_safetensors(art / "adapter_model.safetensors")


def _in_sandbox(job: dict[str, Any], *, read_only: tuple[Path, ...],
                writable: tuple[Path, ...], where: Path) -> dict[str, Any]:
    """Run one export job (`job["kind"]`, a child job of appliance.train.child) in the
    sandbox, seeing only `read_only` and writing only `writable`; its `done` event's fields,
    or TrainingError with the child's own error line."""
    from appliance.train import isolation

    iso = isolation.require_isolation()
    errors: list[str] = []
    done: dict[str, Any] = {}

    def handle(event: dict[str, Any]) -> None:
        if event.get("type") == "error":
            errors.append(str(event.get("message", "")))
        elif event.get("type") == "done":
            done.update({k: v for k, v in event.items() if k != "type"})

    spec = isolation.child_spec(read_only=tuple(p.absolute() for p in read_only),
                                writable=tuple(p.absolute() for p in writable))
    result = isolation.run_isolated(job, handle, iso, spec=spec)
    if result.returncode != 0:
        why = errors[-1] if errors else f"the child exited with status {result.returncode}"
        raise TrainingError(f"the {job['kind']} export failed: {why}", where=str(where),
                            hint="run again with --debug to see the child's output")
    return done


def _merge_into(base_dir: Path, art: Path, dest: Path) -> str:
    """Merge base + adapter in the sandbox into a staging directory beside `dest`, then move
    it into place atomically; the merged tree's digest. The adapter's files were checked
    by `_verified_inputs`."""
    from appliance.digests import tree_digest

    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent)).absolute()
    try:
        _in_sandbox({"kind": "merge", "base_dir": str(base_dir.absolute()),
                     "artifact": str(art.absolute()), "staging": str(staging)},
                    read_only=(base_dir, art), writable=(staging,), where=art)
        staging.rename(dest)
        fsync_dir(dest.parent)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return tree_digest(dest)
