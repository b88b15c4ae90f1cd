"""Content digests of files and directory trees.

The tree digest follows OpenSSF model-signing v1.0: every regular file's sha256, paths
relative to the root and sorted by path component (`a/b` before `a.txt`), and a root digest
that is the sha256 of the concatenated raw file digests in that order. The same function
digests base models, the NER model and signed artifacts, so all digests compare the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from appliance.errors import IntegrityError

CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: Path, *, exclude: Iterable[str] = ()) -> list[PurePosixPath]:
    """Regular files below `root`, relative, sorted by path component. A symlink or any
    other non-regular entry raises IntegrityError: nothing in a tree is silently skipped."""
    skip = {PurePosixPath(name) for name in exclude}
    found: list[PurePosixPath] = []
    for path in root.rglob("*"):
        rel = PurePosixPath(path.relative_to(root).as_posix())
        if rel in skip:
            continue
        if path.is_symlink():
            raise IntegrityError(f"symbolic link in a digested tree: {rel}", where=str(root))
        if path.is_dir():
            continue
        if not path.is_file():
            raise IntegrityError(f"not a regular file: {rel}", where=str(root))
        found.append(rel)
    return sorted(found, key=lambda p: p.parts)


def tree_manifest(root: str | Path, *, exclude: Iterable[str] = ()) -> list[tuple[str, str]]:
    """(relative path, hex sha256) for every regular file below `root`, sorted by component."""
    root = Path(root)
    return [(str(rel), file_sha256(root / rel)) for rel in tree_files(root, exclude=exclude)]


def root_digest(manifest: Iterable[tuple[str, str]]) -> str:
    """`sha256:<hex>` over the concatenated raw file digests, in manifest order."""
    digest = hashlib.sha256()
    for _, hex_digest in manifest:
        digest.update(bytes.fromhex(hex_digest))
    return "sha256:" + digest.hexdigest()


def tree_digest(root: str | Path, *, exclude: Iterable[str] = ()) -> str:
    """Root digest of a directory tree (model-signing v1.0 compatible)."""
    return root_digest(tree_manifest(root, exclude=exclude))
