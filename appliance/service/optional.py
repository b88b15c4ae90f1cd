"""Service functions that other parts of the appliance provide, reached through one adapter.

The console is built beside the dataset, model, audit and artifact services; a build may lack
one of them. `resolve()` finds the named function or raises one clear UnavailableError ("not
available in this build"), so a screen shows a one-line banner instead of failing to start.
A module that exists but fails to import is a real defect and is not hidden.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from appliance.errors import UnavailableError
from appliance.home import Home


def _module(name: str, feature: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (exc.name == name or name.startswith(exc.name + ".")):
            raise UnavailableError(f"{feature} is not available in this build",
                                   where=name) from None
        raise


def resolve(module: str, *names: str, feature: str) -> Callable[..., Any]:
    """The first of `names` that `module` defines, else UnavailableError naming `feature`."""
    found = _module(module, feature)
    for name in names:
        func = getattr(found, name, None)
        if callable(func):
            return func  # type: ignore[no-any-return]
    raise UnavailableError(f"{feature} is not available in this build",
                           where=f"{module}.{names[0]}")


def available(module: str, *names: str) -> bool:
    """Whether `resolve(module, *names)` would succeed."""
    try:
        resolve(module, *names, feature=module)
    except UnavailableError:
        return False
    return True


def verify_audit_log(home: Home) -> dict[str, Any]:
    """Verify the home's audit chain against its signed checkpoints."""
    func = resolve("appliance.service.audit", "verify_log", "verify_home",
                   feature="audit chain verification")
    return dict(func(home))


def export_audit_bundle(home: Home, out: str | Path, passphrase: bytes | None = None
                        ) -> dict[str, Any]:
    """Write the auditor's bundle to `out` (the passphrase lets it checkpoint the tail first)."""
    func = resolve("appliance.service.audit", "export_bundle", feature="audit bundle export")
    if "passphrase" in inspect.signature(func).parameters:
        return dict(func(home, out, passphrase))
    return dict(func(home, out))


def list_datasets(home: Home) -> list[dict[str, Any]]:
    """The public summary of every dataset in the vault."""
    func = resolve("appliance.service.datasets", "list_datasets", feature="the dataset vault")
    return list(func(home))


def list_models(home: Home) -> list[dict[str, Any]]:
    """Imported base models with digests and whether the policy allows each."""
    func = resolve("appliance.service.models", "list_models", feature="base model import")
    return list(func(home))


def verify_artifact(home: Home, artifact: str | Path) -> dict[str, Any]:
    """Verify one artifact directory: signature, file digests, trusted signer."""
    func = resolve("appliance.service.artifacts", "verify", "verify_artifact",
                   feature="artifact verification")
    return dict(func(home, artifact))
