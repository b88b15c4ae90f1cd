"""Files the appliance ships beside its code: policies, the lock, demo data."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from appliance.errors import InstallError

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
POLICY_DIR = PACKAGE_DIR / "data" / "policy"
"""The shipped policies, inside the package so that every install has them (copies of the
repository's policy/*.toml, kept identical by tests/policy/test_shipped_copies.py)."""


def shipped_policy(name: str = "default") -> Path:
    """Path of a policy shipped with the package (`default` or `demo`)."""
    path = POLICY_DIR / f"{name}.toml"
    if not path.is_file():
        raise InstallError(f"the shipped policy {name!r} is missing", where=str(path),
                           hint="reinstall the appliance with scripts/install.sh")
    return path


LOCKS = ("requirements.lock", "requirements-cuda.lock")
"""The CPU lock and the GPU lock (scripts/install.sh and scripts/install.sh --cuda)."""


def lock_file() -> Path | None:
    """The hash-pinned lock the installation was made from, if present: the one whose torch
    pin is the installed torch (2.x+cpu for the CPU lock, the CUDA build for the GPU lock),
    else the CPU lock. Reads package metadata only (torch is not imported)."""
    from importlib import metadata

    paths = [p for name in LOCKS if (p := REPO_ROOT / "vendor_wheels" / name).is_file()]
    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = None
    for path in paths:
        if torch is not None and re.search(rf"^torch=={re.escape(torch)}\s", path.read_text(),
                                           re.MULTILINE):
            return path
    return paths[0] if paths else None


def lock_digest() -> str | None:
    """sha256 of the lock the installation came from (provenance records it), if present."""
    path = lock_file()
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path else None


DEMO_DIR = PACKAGE_DIR / "data" / "demo"
"""The embedded demo's dataset and training recipe."""


def demo_recipe() -> Path:
    """Path of the shipped demo training recipe (QLoRA on the default base model)."""
    return DEMO_DIR / "recipe.toml"
