"""Policy for datasets at rest."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from appliance.policy._base import Section


class Argon2idParams(Section):
    """Argon2id parameters (RFC 9106)."""

    memory_kib: int = Field(default=262_144, ge=8_192, le=4_194_304)
    """Memory cost in KiB (default 256 MiB)."""
    iterations: int = Field(default=3, ge=1, le=64)
    """Time cost (passes)."""
    lanes: int = Field(default=4, ge=1, le=64)
    """Parallelism."""


class KdfCaps(Section):
    """Maximum KDF parameters accepted when reading a stored key, so a crafted header cannot
    demand unbounded memory or time."""

    memory_kib: int = Field(default=1_048_576, ge=8_192, le=16_777_216)
    """Largest memory cost accepted on read (default 1 GiB)."""
    iterations: int = Field(default=16, ge=1, le=1024)
    """Largest time cost accepted on read."""
    lanes: int = Field(default=16, ge=1, le=255)
    """Largest parallelism accepted on read."""


class StoragePolicy(Section):
    """How datasets and secrets are kept on disk."""

    cipher: Literal["cobblestone256"] = "cobblestone256"
    """Chunked AEAD for dataset files: C2SP chunked encryption (cryptography.cobblestone),
    256-bit, key-committing, one random data key per dataset wrapped by the master key."""
    kdf: Literal["argon2id"] = "argon2id"
    """Passphrase key derivation."""
    argon2id: Argon2idParams = Field(default_factory=Argon2idParams)
    """Parameters used when deriving a new key."""
    kdf_max: KdfCaps = Field(default_factory=KdfCaps)
    """Caps applied when reading stored parameters."""
    plaintext_on_disk: Literal[False] = False
    """Decrypted records never reach the disk. Cannot be enabled."""
    tmpfs_dir: str = "/dev/shm"  # noqa: S108 (memory-backed on purpose)
    """Memory-backed directory for the few scratch files training needs (never the home)."""
