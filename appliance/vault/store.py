"""The vault's API for other components: datasets live on disk only encrypted.

One file per dataset, `HOME/vault/<name>.vault` (layout: docs/vault-format.md). Writes are
streaming and atomic (a temp file in the vault directory, fsync, then a no-clobber link into
place) under an exclusive lock; readers decrypt into memory and hand out records only after
the whole stream verified. Every operation leaves an audit event with digests and counts.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import os
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypedDict

from appliance import audit
from appliance.errors import (
    ApplianceError,
    IntegrityError,
    PolicyViolation,
    UsageError,
    VaultError,
)
from appliance.fsutil import fsync_dir, is_no_space, no_space, open_regular
from appliance.home import Home
from appliance.policy import Policy
from appliance.vault import crypto, frames, layout

SUFFIX = ".vault"
TMP_SUFFIX = ".tmp"
LOCK_NAME = ".lock"
READ_BLOCK = 1 << 20  # cache-sized: measured faster than 256 KiB, 4 MiB and 16 MiB
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class DatasetSummary(TypedDict):
    """The public summary of one dataset (`appliance dataset list --json`, one per item)."""

    name: str
    path: str
    size_bytes: int
    dataset_id: str
    created: str
    train_count: int
    eval_count: int
    digest: str
    format_version: int
    cipher: str
    problem: str | None
    count: int


class DatasetMetadata(TypedDict):
    """The verified summary and decrypted metadata of one dataset (`appliance dataset show
    --json`)."""

    name: str
    dataset_id: str
    created: str
    train: int
    eval: int
    digest: str
    size_bytes: int
    cipher: str
    format_version: int
    verified: bool
    metadata: dict[str, Any]


@dataclass(frozen=True)
class DatasetInfo:
    """What anyone can read about a dataset without the passphrase (unauthenticated until
    the dataset is opened with the master key)."""

    name: str
    path: str
    size_bytes: int
    dataset_id: str = ""
    created: str = ""
    train_count: int = 0
    eval_count: int = 0
    digest: str = ""
    format_version: int = layout.FORMAT_VERSION
    cipher: str = "cobblestone256"
    problem: str | None = None

    @property
    def count(self) -> int:
        """Records in both splits."""
        return self.train_count + self.eval_count

    def as_dict(self) -> DatasetSummary:
        """Plain data for JSON output."""
        return {"name": self.name, "path": self.path, "size_bytes": self.size_bytes,
                "dataset_id": self.dataset_id, "created": self.created,
                "train_count": self.train_count, "eval_count": self.eval_count,
                "digest": self.digest, "format_version": self.format_version,
                "cipher": self.cipher, "problem": self.problem, "count": self.count}


def check_name(name: str) -> str:
    """A dataset name: letters, digits, dot, dash, underscore; at most 64 characters."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise UsageError(f"invalid dataset name {name!r}",
                         hint="use letters, digits, '.', '-' and '_' (at most 64, starting "
                              "with a letter or digit)")
    return name


def dataset_path(home: Home, name: str) -> Path:
    """Where the dataset `name` is stored."""
    return home.vault_dir / f"{check_name(name)}{SUFFIX}"


def _vault_dir(home: Home) -> Path:
    home.vault_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home.vault_dir


@contextlib.contextmanager
def _locked(home: Home, *, wait: bool = True) -> Iterator[bool]:
    """Hold the vault's exclusive lock; yields False when `wait` is off and it is busy."""
    fd = os.open(_vault_dir(home) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def _sweep(home: Home) -> None:
    """Remove temp files left by interrupted writes (call with the lock held: no writer is
    active). They hold only ciphertext, but they are not datasets."""
    for path in home.vault_dir.glob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def _audited(home: Home, action: str, name: str, **fields: object) -> Iterator[dict[str, Any]]:
    """Record `action` once: its outcome, plus the fields the block adds to the dict."""
    extra: dict[str, Any] = {}
    try:
        yield extra
    except ApplianceError as exc:
        audit.record(home, action, outcome="failed", dataset=name, error=type(exc).__name__,
                     **fields)
        raise
    audit.record(home, action, outcome="ok", dataset=name, **fields, **extra)


def _info(path: Path, parsed: layout.Parsed) -> DatasetInfo:
    ident, summ = parsed.identity, parsed.summary
    return DatasetInfo(
        name=str(ident.get("name", "")), path=str(path), size_bytes=parsed.size,
        dataset_id=str(ident.get("dataset_id", "")), created=str(ident.get("created", "")),
        train_count=int(summ.get("train", 0)), eval_count=int(summ.get("eval", 0)),
        digest=str(summ.get("digest", "")), format_version=int(ident.get("version", 0)),
        cipher=str(ident.get("cipher", "")))


def _parse_file(handle: BinaryIO) -> layout.Parsed:
    return layout.parse(handle, os.fstat(handle.fileno()).st_size)


# --- write --------------------------------------------------------------------------------
def write_dataset(home: Home, policy: Policy, master_key: bytes, name: str,
                  train_records: Iterable[dict[str, Any]],
                  eval_records: Iterable[dict[str, Any]],
                  metadata: dict[str, Any]) -> DatasetInfo:
    """Encrypt the records into a new dataset `name` (streaming and atomic).

    `metadata` (for example the scrub report) is stored encrypted. Refuses to replace an
    existing dataset. Nothing in plaintext touches the disk; an interrupted write leaves only
    a temp file of ciphertext, removed by the next vault operation.
    """
    check_name(name)
    with _audited(home, "dataset.write", name) as extra:
        info = _write(home, policy, master_key, name, train_records, eval_records, metadata)
        extra.update(digest=info.digest, count=info.count, train=info.train_count,
                     eval=info.eval_count, dataset_id=info.dataset_id)
    return info


def _write(home: Home, policy: Policy, master_key: bytes, name: str,
           train_records: Iterable[dict[str, Any]], eval_records: Iterable[dict[str, Any]],
           metadata: dict[str, Any]) -> DatasetInfo:
    if policy.storage.cipher != "cobblestone256":  # pragma: no cover - the only value
        raise PolicyViolation(f"unsupported cipher {policy.storage.cipher!r}")
    final = dataset_path(home, name)
    with _locked(home):
        _sweep(home)
        if final.exists():
            raise VaultError(f"a dataset named {name!r} already exists", where=str(final),
                             hint="choose another name or remove it with appliance dataset rm")
        dataset_id = uuid.uuid4().hex
        created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        identity: dict[str, Any] = {
            "format": layout.FORMAT_NAME, "version": layout.FORMAT_VERSION,
            "dataset_id": dataset_id, "name": name, "cipher": "cobblestone256",
            "created": created}
        prefix = layout.encode_prefix(identity)
        data_key = crypto.new_data_key()
        envelope = crypto.wrap_for_master(master_key, data_key, prefix)
        tmp = final.parent / f".{name}.{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(prefix + layout.encode_envelope(envelope))
                totals = frames.Totals()
                enc = crypto.BodyEncryptor(data_key, prefix)
                for piece in frames.frame(dataset_id, metadata, train_records,
                                          eval_records, totals):
                    out.write(enc.update(piece))
                out.write(enc.finalize())
                out.write(layout.encode_trailer(frames.summary_of(totals)))
                out.flush()
                os.fsync(out.fileno())
            os.link(tmp, final)  # fails rather than replace a dataset
            tmp.unlink()
            fsync_dir(final.parent)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            if is_no_space(exc):  # the temp file is gone, so the audit line still fits
                raise no_space(final.parent, f"the vault (writing dataset {name!r}) at") \
                    from None
            raise
        size = final.stat().st_size
    return DatasetInfo(name=name, path=str(final), size_bytes=size,
                       dataset_id=dataset_id, created=created,
                       train_count=totals.train, eval_count=totals.eval, digest=totals.digest)


# --- read ---------------------------------------------------------------------------------
def _blocks(handle: BinaryIO, length: int) -> Iterator[memoryview]:
    buf = bytearray(min(READ_BLOCK, max(length, 1)))
    view = memoryview(buf)
    left = length
    while left > 0:
        n = handle.readinto(view[:min(left, len(buf))])  # type: ignore[attr-defined]
        if not n:
            raise IntegrityError("verification failed")
        left -= n
        yield view[:n]


def _open_file(home: Home, name: str, path: Path) -> contextlib.AbstractContextManager[BinaryIO]:
    """Open a dataset file (a regular file only: a FIFO or device planted in the vault is
    refused before it is opened)."""
    if not os.path.lexists(path):
        raise VaultError(f"no dataset named {name!r}", where=str(home.vault_dir),
                         hint="appliance dataset list shows the datasets")
    return open_regular(path, error=VaultError, what="a vault file")


def _failed(name: str, path: Path) -> IntegrityError:
    return IntegrityError(f"dataset {name!r} failed verification: it is damaged, truncated, "
                          "tampered with or not from this home", where=str(path),
                          hint="no record was returned; restore the file from a backup or "
                               "import the dataset again")


@dataclass
class _Opened:
    """A verified dataset: its cleartext parts, data key, plaintext and sections."""

    parsed: layout.Parsed
    data_key: bytes
    plaintext: bytearray
    sections: frames.Sections


@contextlib.contextmanager
def _open_verified(home: Home, master_key: bytes | None, name: str, *,
                   path: Path | None = None, unwrap: Any = None,
                   recompute_digest: bool = False) -> Iterator[_Opened]:
    """Decrypt and verify a whole dataset into memory; wipes the plaintext afterwards."""
    path = path or dataset_path(home, name)
    plaintext = bytearray()
    try:
        with _open_file(home, name, path) as handle:
            parsed = _parse_file(handle)
            if parsed.identity.get("name") != name:
                raise IntegrityError("verification failed")
            if unwrap is None:
                if master_key is None:
                    raise IntegrityError("verification failed")
                data_key = crypto.unwrap_with_master(master_key, parsed.envelope,
                                                     parsed.prefix)
            else:
                data_key = unwrap(parsed)
            plaintext = crypto.decrypt_body(data_key, parsed.prefix,
                                            _blocks(handle, parsed.body_len), parsed.body_len)
        sections = frames.locate(plaintext)
        if sections.dataset_id != parsed.identity.get("dataset_id") \
                or sections.summary != parsed.summary:
            raise IntegrityError("verification failed")
        if recompute_digest:
            _check_digest(plaintext, sections)
        opened = _Opened(parsed, data_key, plaintext, sections)
    except IntegrityError:
        crypto.wipe(plaintext)
        raise _failed(name, path) from None
    except OSError as exc:
        crypto.wipe(plaintext)
        raise VaultError(f"cannot read dataset {name!r}: {exc.strerror}", where=str(path),
                         hint="check the disk") from None
    try:
        yield opened
    except IntegrityError:
        raise _failed(name, path) from None
    finally:
        crypto.wipe(plaintext)


def _check_digest(plaintext: bytearray, sections: frames.Sections) -> None:
    """Re-serialise every record and compare the digest (a deep, slower check)."""
    train = frames.records_of(plaintext, sections, "train")
    eval_ = frames.records_of(plaintext, sections, "eval")
    if frames.digest_of(train, eval_) != sections.summary.get("digest"):
        raise IntegrityError("verification failed")


def _check_split(split: str) -> None:
    if split not in frames.SPLITS:
        raise UsageError(f"unknown split {split!r}", hint="use train, eval or all")


EVAL_ONLY_KEY = "eval_only"
"""Metadata key (encrypted, authenticated) of a dataset imported with --eval-only."""
TRAINING = "train"
"""The read purpose of a training run: an eval-only dataset refuses it."""


def _refuse_eval_only(name: str, metadata: dict[str, Any], purpose: str) -> None:
    if purpose == TRAINING and metadata.get(EVAL_ONLY_KEY) is True:
        raise PolicyViolation(f"dataset {name!r} is eval-only (imported with --eval-only): "
                              "training can never read it",
                              hint="name it as the recipe's eval.dataset to evaluate on it")


def is_eval_only(metadata: dict[str, Any]) -> bool:
    """True for the metadata of a dataset imported with --eval-only."""
    return metadata.get(EVAL_ONLY_KEY) is True


def read_dataset(home: Home, master_key: bytes, name: str,
                 split: str = "train", *, purpose: str = "read") -> list[dict[str, Any]]:
    """The records of one split ("train", "eval" or "all"), decrypted in memory only and
    returned only after the whole file verified."""
    _check_split(split)
    with _audited(home, "dataset.read", name, split=split, purpose=purpose) as extra, \
            _open_verified(home, master_key, name) as opened:
        _refuse_eval_only(name, opened.sections.metadata, purpose)
        records = frames.records_of(opened.plaintext, opened.sections, split)
        extra.update(digest=opened.sections.summary["digest"], count=len(records))
    return records


@dataclass(frozen=True)
class LoadedDataset:
    """Both splits of a verified dataset with what provenance needs, from one decryption."""

    name: str
    dataset_id: str
    digest: str
    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    metadata: dict[str, Any]


def load_dataset(home: Home, master_key: bytes, name: str, *,
                 purpose: str = "train") -> LoadedDataset:
    """Both splits, the digest and the metadata of a dataset, decrypted once, in memory
    only, after the whole file verified (what a training run needs)."""
    with _audited(home, "dataset.read", name, split="all", purpose=purpose) as extra, \
            _open_verified(home, master_key, name) as opened:
        sections = opened.sections
        _refuse_eval_only(name, sections.metadata, purpose)
        loaded = LoadedDataset(
            name=name, dataset_id=sections.dataset_id, digest=str(sections.summary["digest"]),
            train=frames.records_of(opened.plaintext, sections, "train"),
            eval=frames.records_of(opened.plaintext, sections, "eval"),
            metadata=sections.metadata)
        extra.update(digest=loaded.digest, count=len(loaded.train) + len(loaded.eval))
    return loaded


def read_metadata(home: Home, master_key: bytes, name: str) -> DatasetMetadata:
    """The verified public summary and the encrypted metadata (e.g. the scrub report)."""
    with _audited(home, "dataset.metadata", name) as extra, \
            _open_verified(home, master_key, name) as opened:
        info = _info(dataset_path(home, name), opened.parsed)
        result: DatasetMetadata = {
            "name": info.name, "dataset_id": info.dataset_id, "created": info.created,
            "train": info.train_count, "eval": info.eval_count, "digest": info.digest,
            "size_bytes": info.size_bytes, "cipher": info.cipher,
            "format_version": info.format_version, "verified": True,
            "metadata": opened.sections.metadata}
        extra.update(digest=info.digest, count=info.count)
    return result


def verify_dataset(home: Home, master_key: bytes, name: str, *,
                   recompute_digest: bool = True) -> DatasetInfo:
    """Decrypt and verify a whole dataset in memory (the key, every chunk, the end of the
    stream, and with `recompute_digest` the records' digest) without returning any record."""
    with _audited(home, "dataset.verify", name, deep=recompute_digest) as extra, \
            _open_verified(home, master_key, name,
                           recompute_digest=recompute_digest) as opened:
        info = _info(dataset_path(home, name), opened.parsed)
        extra.update(digest=info.digest, count=info.count)
    return info


# --- inspect and remove -------------------------------------------------------------------
def dataset_info(home: Home, name: str) -> DatasetInfo:
    """The public (unauthenticated) summary of one dataset, no passphrase needed."""
    path = dataset_path(home, name)
    try:
        with _open_file(home, name, path) as handle:
            return _info(path, _parse_file(handle))
    except IntegrityError:
        raise _failed(name, path) from None


def list_datasets(home: Home) -> list[DatasetInfo]:
    """Every dataset in the vault, by name; unreadable files are listed with a problem."""
    if not home.vault_dir.is_dir():
        return []
    with _locked(home, wait=False) as free:
        if free:
            _sweep(home)
    found = []
    for path in sorted(home.vault_dir.glob(f"*{SUFFIX}")):
        name = path.name[:-len(SUFFIX)]
        if not _NAME_RE.fullmatch(name) or not path.is_file():
            continue
        try:
            info = dataset_info(home, name)
            if info.name != name:
                raise IntegrityError("name mismatch")
        except (IntegrityError, OSError):
            info = DatasetInfo(name=name, path=str(path), size_bytes=path.stat().st_size,
                               problem="unreadable or damaged header")
        found.append(info)
    return found


def remove_dataset(home: Home, name: str) -> DatasetInfo:
    """Delete a dataset: overwrite its wrapped key with random bytes, fsync, unlink.

    Without the wrapped key the ciphertext cannot be decrypted even if its blocks survive
    on the storage device. Needs no passphrase (anyone who can delete the file could anyway).
    """
    check_name(name)
    path = dataset_path(home, name)
    with _audited(home, "dataset.remove", name) as extra, _locked(home):
        try:
            handle = open(path, "r+b")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise VaultError(f"no dataset named {name!r}", where=str(home.vault_dir),
                             hint="appliance dataset list shows the datasets") from None
        with handle:
            size = os.fstat(handle.fileno()).st_size
            try:
                parsed = _parse_file(handle)
                info = _info(path, parsed)
                start, length = parsed.envelope_offset, parsed.envelope_len
            except IntegrityError:  # damaged: destroy the whole header region instead
                info = DatasetInfo(name=name, path=str(path), size_bytes=size,
                                   problem="damaged")
                start, length = 0, min(size, layout.PREFIX_FIXED + 2 * layout.MAX_SECTION_BYTES)
            handle.seek(start)
            handle.write(os.urandom(length))
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink()
        fsync_dir(path.parent)
        extra.update(digest=info.digest, count=info.count, dataset_id=info.dataset_id)
    return info


# --- export -------------------------------------------------------------------------------
def export_dataset(home: Home, policy: Policy, master_key: bytes, name: str,
                   out: Path, recipient_passphrase: bytes) -> DatasetInfo:
    """Write dataset `name` to `out` with its data key re-wrapped for a recipient passphrase
    (Argon2id + AES-256-GCM); the encrypted body is copied byte for byte. Only when
    `export.datasets` is "encrypted"; the dataset is fully verified first."""
    from appliance.fsutil import atomic_writer
    from appliance.masterkey import kdf_params

    out = Path(out)
    with _audited(home, "dataset.export", name, out=str(out)) as extra:
        if policy.export.datasets != "encrypted":
            raise PolicyViolation(f"the policy forbids exporting datasets ({name!r})",
                                  hint='export.datasets must be "encrypted" to allow it')
        if out.exists():
            raise VaultError("the export file already exists", where=str(out),
                             hint="choose another --out path")
        with _open_verified(home, master_key, name, recompute_digest=True) as opened:
            parsed = opened.parsed
            envelope = crypto.wrap_for_passphrase(opened.data_key, recipient_passphrase,
                                                  kdf_params(policy), parsed.prefix)
        path = dataset_path(home, name)
        with open(path, "rb") as src, atomic_writer(out) as dst:
            dst.write(parsed.prefix + layout.encode_envelope(envelope))
            src.seek(parsed.body_offset)
            for block in _blocks(src, parsed.size - parsed.body_offset):
                dst.write(block)
        info = _info(path, parsed)
        extra.update(digest=info.digest, count=info.count)
    return info


def read_export(path: Path, policy: Policy, passphrase: bytes, split: str = "all",
                ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Open an exported dataset file with its recipient passphrase: (metadata, records)."""
    from appliance.masterkey import kdf_caps

    _check_split(split)
    path = Path(path)
    with open_regular(path, error=VaultError, what="a vault file") as handle:
        try:
            name = str(_parse_file(handle).identity.get("name", ""))
        except IntegrityError:
            raise _failed(path.name, path) from None

    def unwrap(parsed: layout.Parsed) -> bytes:
        return crypto.unwrap_with_passphrase(parsed.envelope, passphrase, kdf_caps(policy),
                                             parsed.prefix)

    home = Home(path.parent)
    with _open_verified(home, None, name, path=path, unwrap=unwrap) as opened:
        return (opened.sections.metadata,
                frames.records_of(opened.plaintext, opened.sections, split))
