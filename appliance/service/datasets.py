"""Dataset vault operations for the CLI and the TUI (plain arguments in, plain data out).

Each function opens the initialised home's active policy, asks for the passphrase only when
the operation decrypts something, and leaves the audit events to the vault store (plus the
events for the steps that happen before the store is reached, such as a wrong passphrase).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, TypedDict

from appliance import audit, keys, trust
from appliance.errors import PassphraseError, PolicyViolation, UsageError
from appliance.home import Home
from appliance.passphrase import Passphrase, resolve
from appliance.policy import Policy, load_policy
from appliance.vault import store


def active_policy(home: Home) -> Policy:
    """The initialised home's active policy."""
    trust.require_home(home)
    return load_policy(home.policy_file)


def unlock(home: Home, policy: Policy, action: str, name: str | None = None, *,
           passphrase: Passphrase) -> bytes:
    """The vault master key, from the passphrase; a wrong one is audited as `action`."""
    try:
        return trust.unlock(home, resolve(passphrase), policy)
    except PassphraseError as exc:
        audit.record(home, action, outcome="failed", dataset=name, error="PassphraseError")
        if name is None:
            raise
        raise PassphraseError(f"cannot open dataset {name!r}: {exc.message}",
                              hint=exc.hint) from None


def list_datasets(home: Home) -> list[DatasetSummary]:
    """The public summary of every dataset (no passphrase needed)."""
    active_policy(home)
    infos = store.list_datasets(home)
    audit.record(home, "dataset.list", count=len(infos))
    return [info.as_dict() for info in infos]


class ImportOptions(TypedDict):
    """What the active policy says about importing."""

    policy_plants_canaries: bool
    check_before_signing: bool


def import_options(home: Home) -> ImportOptions:
    """What the active policy says about importing: whether it plants canaries anyway
    (`privacy.plant_canaries`), and whether training will require them
    (`privacy.check_before_signing`)."""
    privacy = active_policy(home).privacy
    return {"policy_plants_canaries": privacy.plant_canaries,
            "check_before_signing": privacy.check_before_signing}


DatasetSummary = store.DatasetSummary
"""One dataset's public summary (`appliance dataset list --json`, one per item)."""
DatasetMetadata = store.DatasetMetadata
"""One dataset's verified summary and metadata (`appliance dataset show --json`)."""


class DatasetVerified(DatasetSummary):
    """A dataset that decrypted and verified whole (`appliance dataset verify --json`)."""

    ok: bool


class DatasetExported(DatasetSummary):
    """A dataset exported for a recipient (`appliance dataset export --json`)."""

    out: str
    wrapped_for: str


def show_dataset(home: Home, name: str, *, passphrase: Passphrase) -> DatasetMetadata:
    """Verified metadata and the encrypted scrub report of one dataset (no records)."""
    store.check_name(name)
    policy = active_policy(home)
    store.dataset_info(home, name)  # a clear "no such dataset" before asking a passphrase
    key = unlock(home, policy, "dataset.metadata", name, passphrase=passphrase)
    return store.read_metadata(home, key, name)


def verify_dataset(home: Home, name: str, *, passphrase: Passphrase) -> DatasetVerified:
    """Decrypt and check a whole dataset in memory; returns its verified public summary."""
    store.check_name(name)
    policy = active_policy(home)
    store.dataset_info(home, name)
    key = unlock(home, policy, "dataset.verify", name, passphrase=passphrase)
    return {**store.verify_dataset(home, key, name).as_dict(), "ok": True}


def sample_dataset(home: Home, name: str, *, n: int = 5, split: str = "train",
                   seed: int | None = None, passphrase: Passphrase) -> list[dict[str, Any]]:
    """Up to `n` scrubbed records of `split`, decrypted in memory: the first `n`, or a random
    choice when `seed` is given."""
    if n < 0:
        raise UsageError("-n must not be negative")
    store.check_name(name)
    policy = active_policy(home)
    store.dataset_info(home, name)
    key = unlock(home, policy, "dataset.read", name, passphrase=passphrase)
    records = store.read_dataset(home, key, name, split, purpose="sample")
    if seed is None:
        return records[:n]
    picker = random.Random(seed)  # noqa: S311 - choosing a preview, not a secret
    return picker.sample(records, min(n, len(records)))


def remove_dataset(home: Home, name: str) -> DatasetSummary:
    """Destroy a dataset (its wrapped key is overwritten before the file is unlinked)."""
    store.check_name(name)
    active_policy(home)
    return store.remove_dataset(home, name).as_dict()


def export_dataset(home: Home, name: str, out: str | Path, *,
                   recipient_passphrase: Passphrase, passphrase: Passphrase
                   ) -> DatasetExported:
    """Export a dataset as a vault file whose key is wrapped for a recipient passphrase,
    only when the policy's `export.datasets` is "encrypted"."""
    store.check_name(name)
    policy = active_policy(home)
    if policy.export.datasets != "encrypted":
        audit.record(home, "dataset.export", outcome="refused", dataset=name,
                     error="PolicyViolation")
        raise PolicyViolation(f"the policy forbids exporting dataset {name!r}",
                              where=str(home.policy_file),
                              hint='export.datasets must be "encrypted" to allow it')
    store.dataset_info(home, name)
    key = unlock(home, policy, "dataset.export", name, passphrase=passphrase)
    info = store.export_dataset(home, policy, key, name, Path(out),
                                resolve(recipient_passphrase))
    return {**info.as_dict(), "out": str(out), "wrapped_for": "recipient passphrase"}


def change_passphrase(home: Home, *, passphrase: Passphrase,
                      new_passphrase: Passphrase) -> None:
    """Re-seal the vault master key under a new passphrase: every dataset key stays wrapped
    by the same master key, so no dataset byte changes and the old passphrase stops working."""
    policy = active_policy(home)
    old = resolve(passphrase)
    unlock(home, policy, "passphrase.change", passphrase=old)
    new = resolve(new_passphrase)
    if new == old:
        raise PassphraseError("the new passphrase is the same as the current one",
                              hint="choose a different passphrase")
    keys.change_passphrase(home, old, new, policy)
    audit.record(home, "passphrase.change", datasets=len(store.list_datasets(home)))
