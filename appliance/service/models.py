"""Base model operations for the CLI and TUI."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from appliance import audit, trust
from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.models import importer, store
from appliance.policy import Policy, load_policy


class ModelImported(TypedDict):
    """An imported base model (`appliance model import --json`)."""

    name: str
    kind: str
    root_digest: str
    source_digest: str
    files: dict[str, str]
    path: str
    imported_at: str
    allowed: bool
    cached: bool
    skipped: list[str]
    recorded: bool


class ModelListed(TypedDict):
    """One imported base model (`appliance model list --json`, one per item)."""

    name: str
    kind: str
    root_digest: str
    source_digest: str
    path: str
    imported_at: str
    file_count: int
    size_bytes: int
    allowed: bool
    allowed_reason: str


def active_policy(home: Home) -> Policy:
    """The home's active policy."""
    trust.require_home(home)
    return load_policy(home.policy_file)


def import_model(home: Home, source: str | None, name: str | None, *,
                 default: bool = False, passphrase: bytes | None = None) -> ModelImported:
    """Import a base model (or the embedded default) and audit it; returns plain data. With
    the passphrase the home manifest records its digests (`recorded`), so a later change of
    the converted weights and their record is refused by every command holding it."""
    policy = active_policy(home)
    if passphrase is not None:

        trust.unlock(home, passphrase, policy)  # checks the manifest before adding to it
    if default:
        path = importer.default_gguf()
        name = name or importer.DEFAULT_NAME
    else:
        if source is None or name is None:
            from appliance.errors import UsageError

            raise UsageError("model import needs PATH and --name NAME (or --default)")
        path = Path(source)
    try:
        record, cached, skipped = importer.import_model(home, policy, path, name)
    except ApplianceError as exc:
        audit.record(home, "model.import", outcome="refused", name=name,
                     error=type(exc).__name__)
        raise
    allowed = store.is_allowed(policy, record)
    audit.record(home, "model.import", name=record.name, kind=record.kind,
                 root_digest=record.root_digest, source_digest=record.source_digest,
                 files=len(record.files), cached=cached, allowed=allowed)
    if passphrase is not None:
        _record_in_manifest(home, record)
    return {"name": record.name, "kind": record.kind, "root_digest": record.root_digest,
            "source_digest": record.source_digest, "files": record.files,
            "path": str(record.path), "imported_at": record.imported_at, "allowed": allowed,
            "cached": cached, "skipped": skipped, "recorded": passphrase is not None}


def _record_in_manifest(home: Home, record: store.ModelRecord) -> None:
    from appliance import trust

    trust.update(home, models={record.name: {"root_digest": record.root_digest,
                                             "source_digest": record.source_digest}})


def allowance(policy: Policy, record: store.ModelRecord) -> str:
    """Why the policy allows the model, or why not and what an admin can do."""
    if policy.models.allow_any:
        return "models.allow_any = true (development only)"
    for entry in policy.models.allowed:
        if entry.digest == record.root_digest:
            return f"root digest listed in models.allowed as {entry.name!r}"
        if entry.digest == record.source_digest:
            return f"source digest listed in models.allowed as {entry.name!r}"
    return (f"its digests are not in models.allowed (an admin can add "
            f"{record.source_digest})")


def _size(record: store.ModelRecord) -> int:
    """Bytes of the imported weights directory (0 for files that have gone)."""
    total = 0
    for name in record.files:
        path = record.weights_dir / name
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total


def list_models(home: Home) -> list[ModelListed]:
    """Every imported model with its digests, size, and whether the policy allows it (and
    why)."""
    policy = active_policy(home)
    return [{"name": record.name, "kind": record.kind, "root_digest": record.root_digest,
             "source_digest": record.source_digest, "path": str(record.path),
             "imported_at": record.imported_at, "file_count": len(record.files),
             "size_bytes": _size(record), "allowed": store.is_allowed(policy, record),
             "allowed_reason": allowance(policy, record)}
            for record in store.list_records(home)]


def record_model(home: Home, name: str, passphrase: bytes) -> dict[str, str]:
    """Record an imported model's digests in the home manifest (what `model import` does
    with the passphrase), for a model directory placed by other means."""

    trust.unlock(home, passphrase, active_policy(home))
    record = store.read_record(home, name)
    _record_in_manifest(home, record)
    return {"name": record.name, "root_digest": record.root_digest}
