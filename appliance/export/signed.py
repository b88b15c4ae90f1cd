"""Signing an export: the output is built in a staging directory with the output's name,
given provenance naming the adapter artifact it came from (by its model-signing root
digest), signed by `appliance.signing.sign_artifact`, then renamed into place in one step,
so an export directory never exists unsigned. A single-file export (`--out NAME.gguf`) is
signed by `appliance.signing.sign_file` in the staging directory and its files are linked
into place beside each other, the GGUF itself last, so it never exists unsigned either.

Build types: `docs/buildtypes/merged-model/v1.md`, `docs/buildtypes/gguf-export/v1.md`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.errors import UsageError
from appliance.fsutil import atomic_write_text, fsync_dir
from appliance.home import Home
from appliance.signing.provenance import DOCS_URI, library_versions

MERGED_BUILD_TYPE = DOCS_URI + "docs/buildtypes/merged-model/v1.md"
GGUF_BUILD_TYPE = DOCS_URI + "docs/buildtypes/gguf-export/v1.md"


def export_provenance(*, kind: str, artifact: Path, verified: Mapping[str, Any],
                      policy_digest: str, output: dict[str, Any]) -> dict[str, Any]:
    """What produced an export: the adapter artifact (root digest, its own signed
    provenance's base model, dataset and policy), the active policy, the output's settings."""
    source = verified.get("provenance") or {}
    now = _dt.datetime.now(_dt.UTC).isoformat()
    return {
        "run_id": f"{kind}-{artifact.name}", "started": now, "finished": now,
        "policy_digest": policy_digest,
        "adapter": {"name": artifact.name, "digest": verified["root_digest"],
                    "signer": verified.get("signer"),
                    "adapter_sha256": source.get("adapter_sha256")},
        "base_model": source.get("base_model"),
        "dataset": source.get("dataset"),
        "training_policy_digest": source.get("policy_digest"),
        "export": {"kind": kind, **output},
        "appliance_version": __version__, "libraries": library_versions(),
    }


@contextlib.contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """A staging directory path named like `dest` (beside it, so the final rename is
    atomic); removed with everything in it unless the caller moved it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        yield root / dest.name
    finally:
        shutil.rmtree(root, ignore_errors=True)


def sign_and_place(home: Home, staging: Path, dest: Path, prov: dict[str, Any],
                   passphrase: bytes, build_type: str) -> dict[str, Any]:
    """Write provenance.json, sign `staging`, rename it to `dest`; returns the signing
    result as plain data."""
    from appliance.signing import sign_artifact

    atomic_write_text(staging / "provenance.json", json.dumps(prov, indent=2, sort_keys=True),
                      0o644)
    result = sign_artifact(home, staging, passphrase, prov, build_type=build_type)
    staging.rename(dest)
    fsync_dir(dest.parent)
    return {"root_digest": result.root_digest, "signer": result.signer, "files": result.files}


def companion(dest: Path, suffix: str) -> Path:
    """A file that travels with the single-file export `dest` (NAME.gguf.Modelfile)."""
    return dest.with_name(dest.name + suffix)


def file_outputs(dest: Path, companions: tuple[str, ...]) -> list[Path]:
    """Every path a single-file export `dest` writes: its companions, its signature files,
    the file itself last."""
    from appliance.signing import sidecars

    return [*(companion(dest, c) for c in companions), *sidecars(dest).values(), dest]


def sign_and_place_file(home: Home, staging: Path, dest: Path, companions: tuple[str, ...],
                        prov: dict[str, Any], passphrase: bytes,
                        build_type: str) -> dict[str, Any]:
    """`staging` holds dest's name and its companions (dest's name + each suffix): sign it
    there, then link every file into dest's directory (refusing any that exists), the
    signed file last; on failure the ones placed are removed. Returns the signing result
    as plain data."""
    import os

    from appliance.signing import sign_file

    staged_file = staging / dest.name
    result = sign_file(home, staged_file, passphrase, prov, build_type=build_type,
                       companions=tuple(companion(staged_file, c) for c in companions))
    placed: list[Path] = []
    try:
        for target in file_outputs(dest, companions):
            try:
                os.link(staging / target.name, target)  # never overwrites
            except FileExistsError:
                raise UsageError("the output already exists (it appeared during the "
                                 "export)", where=str(target)) from None
            placed.append(target)
        fsync_dir(dest.parent)
    except BaseException:
        for target in placed:
            with contextlib.suppress(OSError):
                target.unlink()
        raise
    return {"root_digest": result.root_digest, "signer": result.signer, "files": result.files}
