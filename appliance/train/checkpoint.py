"""Checkpoints without pickle: tensors (adapter weights, optimizer moments, RNG state) in
safetensors, everything else (step, data position, schedule, optimizer hyper-parameters)
in JSON; both sealed with AES-256-GCM when the policy encrypts checkpoints.

Layout: `RUN/checkpoints/step-NNNNNNNN/{tensors.safetensors,state.json}[.sealed]` and
`RUN/checkpoints/latest.json` naming the newest complete one (written last, atomically, so
a kill -9 at any point leaves the previous checkpoint usable).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from appliance.errors import IntegrityError, TrainingError
from appliance.fsutil import atomic_write_bytes, atomic_write_text
from appliance.train import sealing

KEEP = 2


def _names(key: bytes | None) -> tuple[str, str]:
    suffix = ".sealed" if key else ""
    return f"tensors.safetensors{suffix}", f"state.json{suffix}"


def save(run_dir: Path, run_id: str, step: int, tensors: dict[str, Any], state: dict[str, Any],
         key: bytes | None) -> Path:
    """Write checkpoint `step` and point latest.json at it; prunes older ones."""
    from safetensors.torch import save as save_tensors

    root = run_dir / "checkpoints"
    target = root / f"step-{step:08d}"
    if target.exists():
        shutil.rmtree(target)
    tensor_name, state_name = _names(key)
    blob = save_tensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()})
    text = json.dumps(state, sort_keys=True).encode("utf-8")
    if key:
        blob = sealing.seal(key, blob, f"{run_id}/{step}/tensors".encode())
        text = sealing.seal(key, text, f"{run_id}/{step}/state".encode())
    atomic_write_bytes(target / tensor_name, blob)
    atomic_write_bytes(target / state_name, text)
    atomic_write_text(root / "latest.json", json.dumps({"step": step, "dir": target.name,
                                                        "sealed": bool(key)}))
    for old in sorted(root.glob("step-*"))[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def content_digest(tensors: dict[str, Any], state: dict[str, Any]) -> str:
    """sha256 over a checkpoint's tensors (name order) and state, as loaded (unsealed): the
    same on every node of a cluster run that stopped at one step, whatever each node's key."""
    import hashlib

    from safetensors.torch import save as save_tensors

    digest = hashlib.sha256(save_tensors({k: v.detach().contiguous().cpu()
                                          for k, v in sorted(tensors.items())}))
    digest.update(json.dumps(state, sort_keys=True).encode("utf-8"))
    return "sha256:" + digest.hexdigest()


def latest_step(run_dir: Path) -> int | None:
    """Step of the newest complete checkpoint, or None."""
    pointer = run_dir / "checkpoints" / "latest.json"
    if not pointer.is_file():
        return None
    return int(json.loads(pointer.read_text("utf-8"))["step"])


def load(run_dir: Path, run_id: str, key: bytes | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(tensors, state) of the newest complete checkpoint."""
    from safetensors.torch import load as load_tensors

    from appliance.models.safety import check_safetensors

    root = run_dir / "checkpoints"
    try:
        pointer = json.loads((root / "latest.json").read_text("utf-8"))
        step, target = int(pointer["step"]), root / str(pointer["dir"])
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise TrainingError("no checkpoint to resume from", where=str(root)) from exc
    if bool(pointer.get("sealed")) != bool(key):
        raise IntegrityError("checkpoint encryption does not match the policy", where=str(root))
    tensor_name, state_name = _names(key)
    blob = (target / tensor_name).read_bytes()
    text = (target / state_name).read_bytes()
    if key:
        blob = sealing.unseal(key, blob, f"{run_id}/{step}/tensors".encode(), str(target))
        text = sealing.unseal(key, text, f"{run_id}/{step}/state".encode(), str(target))
    else:
        tmp = target / tensor_name
        check_safetensors(tmp)
    state = json.loads(text)
    if state.get("step") != step:
        raise IntegrityError("checkpoint state does not match its pointer", where=str(target))
    return load_tensors(blob), state
