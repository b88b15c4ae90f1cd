"""Imported base models in the home: `HOME/models/<name>/` holds `weights/` (a safetensors
model directory) and `model.json` (per-file sha256, root digest, source digest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.digests import tree_manifest
from appliance.errors import IntegrityError, ModelFormatError, PolicyViolation
from appliance.fsutil import loads_json, read_regular
from appliance.home import Home
from appliance.policy import Policy

MANIFEST = "model.json"
MAX_RECORD_BYTES = 16 << 20
"""Largest model manifest read (one line per weight file)."""
WEIGHTS = "weights"


@dataclass(frozen=True)
class ModelRecord:
    """One imported base model as recorded at import."""

    name: str
    kind: str
    root_digest: str
    source_digest: str
    files: dict[str, str]
    path: Path
    imported_at: str

    @property
    def weights_dir(self) -> Path:
        """The safetensors model directory."""
        return self.path / WEIGHTS

    def to_json(self) -> dict[str, Any]:
        """Plain data for manifests and --json output."""
        return {"name": self.name, "kind": self.kind, "root_digest": self.root_digest,
                "source_digest": self.source_digest, "files": self.files,
                "path": str(self.path), "imported_at": self.imported_at}


def model_dir(home: Home, name: str) -> Path:
    """Where model `name` lives in the home."""
    return home.models_dir / name


def read_record(home: Home, name: str) -> ModelRecord:
    """The record of an imported model (ModelFormatError when absent or unreadable)."""
    path = model_dir(home, name)
    try:
        if not (path / MANIFEST).exists():
            raise FileNotFoundError(path / MANIFEST)
        data = loads_json(read_regular(path / MANIFEST, max_bytes=MAX_RECORD_BYTES,
                                       what="the model manifest", error=IntegrityError))
        return ModelRecord(name=data["name"], kind=data["kind"],
                           root_digest=data["root_digest"],
                           source_digest=data["source_digest"], files=dict(data["files"]),
                           path=path, imported_at=data["imported_at"])
    except FileNotFoundError:
        raise ModelFormatError(f"no imported model named {name!r}", where=str(home.models_dir),
                               hint="appliance model list shows imported models; "
                                    "appliance model import adds one") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError("the model manifest is unreadable", where=str(path)) from exc


def list_records(home: Home) -> list[ModelRecord]:
    """Every imported model, by name."""
    if not home.models_dir.is_dir():
        return []
    return [read_record(home, p.name) for p in sorted(home.models_dir.iterdir())
            if (p / MANIFEST).is_file()]


def is_allowed(policy: Policy, record: ModelRecord) -> bool:
    """True when the policy allows the model's root digest or its source digest."""
    if policy.models.allow_any:
        return True
    allowed = {m.digest for m in policy.models.allowed}
    return record.root_digest in allowed or record.source_digest in allowed


def require_allowed(policy: Policy, record: ModelRecord) -> None:
    """PolicyViolation unless the policy allows this model."""
    if not is_allowed(policy, record):
        raise PolicyViolation(
            f"base model {record.name!r} ({record.source_digest}) is not allowed by the policy",
            where="policy models.allowed",
            hint=f"an admin can add digest {record.source_digest!r} to [[models.allowed]]")


def require_pinned(policy: Policy, record: ModelRecord,
                   recorded: dict[str, str] | None) -> None:
    """Training loads the converted weights, so their root digest must be named by an
    authenticated record: `models.allowed` (the policy is bound by the home manifest) or the
    home manifest's entry for this model (`recorded`, MAC-checked). The source digest alone
    does not pin what is loaded."""
    if policy.models.allow_any or record.root_digest in {m.digest for m in
                                                         policy.models.allowed}:
        return
    if recorded is not None and recorded.get("root_digest") == record.root_digest:
        return
    raise PolicyViolation(
        f"base model {record.name!r}: no authenticated record names its converted weights "
        f"({record.root_digest})", where=str(record.path),
        hint="import it with the passphrase available (appliance model import ... "
             "--passphrase-file FILE), or pin that root digest in [[models.allowed]]")


def verify_weights(record: ModelRecord) -> None:
    """Re-digest the weights directory; IntegrityError if anything changed since import."""
    manifest = tree_manifest(record.weights_dir)
    if dict(manifest) != record.files:
        raise IntegrityError("the imported model's files changed since import",
                             where=str(record.weights_dir),
                             hint="re-import the model from a trusted source")
