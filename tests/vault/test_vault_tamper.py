"""Integrity: every damage to a vault file is refused with one error naming the dataset,
and no record is returned (flips, truncation, appended bytes, chunk edits, splices)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from vault_helpers import VaultHome, make_home

from appliance import trust
from appliance.errors import IntegrityError, PassphraseError
from appliance.vault import crypto, layout, store

STREAM_CHUNK = crypto.CHUNK_BYTES + crypto.TAG_BYTES


def _expect_refused(vh: VaultHome, name: str, data: bytes) -> None:
    """Install `data` as dataset `name` and check that every read refuses it."""
    path = vh.home.vault_dir / f"{name}.vault"
    path.write_bytes(data)
    with pytest.raises(IntegrityError) as err:
        store.read_dataset(vh.home, vh.master_key, name, "all",
                           purpose="tamper-test")
    assert f"dataset {name!r}" in err.value.line() and err.value.exit_code == 1


def _parsed(data: bytes, path: Path) -> layout.Parsed:
    with open(path, "rb") as handle:
        return layout.parse(handle, len(data))


@pytest.fixture
def small(vhome: VaultHome) -> tuple[VaultHome, bytes]:
    """A small dataset (one stream chunk) and its original bytes."""
    info = store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "small",
                               [{"t": "alpha"}, {"t": "beta"}], [{"t": "gamma"}], {"m": 1})
    return vhome, Path(info.path).read_bytes()


@pytest.fixture
def large(vhome: VaultHome) -> tuple[VaultHome, bytes]:
    """A dataset spanning several stream chunks and its original bytes."""
    rng = random.Random(7)
    train = [{"t": "".join(rng.choice("abcdefgh ") for _ in range(200)), "i": i}
             for i in range(400)]
    info = store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "large", train,
                               train[:40], {"m": 2})
    return vhome, Path(info.path).read_bytes()


def test_every_single_byte_flip_is_refused(small: tuple[VaultHome, bytes]) -> None:
    """Flipping any one byte anywhere in a small file (header, key, body, trailer) fails."""
    vh, data = small
    for offset in range(len(data)):
        damaged = bytearray(data)
        damaged[offset] ^= 0x01 if offset % 2 else 0x80
        _expect_refused(vh, "small", bytes(damaged))


def test_random_flips_in_a_large_file_are_refused(large: tuple[VaultHome, bytes]) -> None:
    """Random bit flips across a multi-chunk file fail."""
    vh, data = large
    rng = random.Random(1234)
    for _ in range(150):
        damaged = bytearray(data)
        damaged[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        _expect_refused(vh, "large", bytes(damaged))


def test_truncation_at_every_offset_is_refused(small: tuple[VaultHome, bytes]) -> None:
    """Cutting a small file at any length, header end included, fails."""
    vh, data = small
    for length in range(len(data)):
        _expect_refused(vh, "small", data[:length])


def test_truncation_at_chunk_boundaries_is_refused(large: tuple[VaultHome, bytes]) -> None:
    """Dropping whole chunks from the end of the body (keeping the trailer) fails."""
    vh, data = large
    parsed = _parsed(data, vh.home.vault_dir / "large.vault")
    body_end = parsed.body_offset + parsed.body_len
    trailer = data[body_end:]
    first_chunk = parsed.body_offset + crypto.STREAM_HEADER_BYTES
    for cut in range(first_chunk, body_end, STREAM_CHUNK):
        _expect_refused(vh, "large", data[:cut] + trailer)
        _expect_refused(vh, "large", data[:cut])
    _expect_refused(vh, "large", data[:parsed.body_offset] + trailer)


def test_appended_bytes_are_refused(small: tuple[VaultHome, bytes]) -> None:
    """Anything after the end marker, or a chunk's worth inserted before the trailer, fails."""
    vh, data = small
    for extra in (b"\x00", b"more", os.urandom(STREAM_CHUNK)):
        _expect_refused(vh, "small", data + extra)
    parsed = _parsed(data, vh.home.vault_dir / "small.vault")
    body_end = parsed.body_offset + parsed.body_len
    _expect_refused(vh, "small", data[:body_end] + os.urandom(STREAM_CHUNK) + data[body_end:])


def _chunks(data: bytes, parsed: layout.Parsed) -> tuple[bytes, list[bytes], bytes]:
    start = parsed.body_offset + crypto.STREAM_HEADER_BYTES
    end = parsed.body_offset + parsed.body_len
    chunks = [data[i:min(i + STREAM_CHUNK, end)] for i in range(start, end, STREAM_CHUNK)]
    return data[:start], chunks, data[end:]


def test_deleted_duplicated_swapped_chunks_are_refused(
        large: tuple[VaultHome, bytes]) -> None:
    """Reordering, dropping or repeating body chunks fails."""
    vh, data = large
    head, chunks, tail = _chunks(data, _parsed(data, vh.home.vault_dir / "large.vault"))
    assert len(chunks) >= 5
    variants = [
        chunks[:1] + chunks[2:],                          # delete a middle chunk
        chunks[:-1],                                      # delete the final chunk
        chunks[1:],                                       # delete the first chunk
        chunks[:2] + chunks[1:],                          # duplicate a chunk
        chunks + chunks[-1:],                             # duplicate the final chunk
        [chunks[1], chunks[0], *chunks[2:]],              # swap the first two
        [*chunks[:-2], chunks[-1], chunks[-2]],           # swap the last two
    ]
    for body in variants:
        _expect_refused(vh, "large", head + b"".join(body) + tail)
    (vh.home.vault_dir / "large.vault").write_bytes(head + b"".join(chunks) + tail)
    assert len(store.read_dataset(vh.home, vh.master_key, "large", "all")) == 440


def test_spliced_headers_and_files_are_refused(vhome: VaultHome, tmp_path: Path) -> None:
    """A header, key envelope, body or whole file from another dataset fails."""
    a = store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "a", [{"t": "A"}],
                            [], {})
    b = store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "b", [{"t": "B"}],
                            [], {})
    da, db = Path(a.path).read_bytes(), Path(b.path).read_bytes()
    pa, pb = _parsed(da, Path(a.path)), _parsed(db, Path(b.path))
    env_end_a = pa.envelope_offset + pa.envelope_len
    env_end_b = pb.envelope_offset + pb.envelope_len
    # b's whole header (identity + key) on a's body and trailer
    _expect_refused(vhome, "a", db[:env_end_b] + da[env_end_a:])
    # a's identity with b's key envelope
    _expect_refused(vhome, "a", da[:pa.envelope_offset] + db[pb.envelope_offset:env_end_b]
                    + da[env_end_a:])
    # b's file renamed to a
    _expect_refused(vhome, "a", db)
    # a's header, b's body, a's trailer
    _expect_refused(vhome, "a", da[:env_end_a] + db[env_end_b:pb.body_offset + pb.body_len]
                    + da[pa.body_offset + pa.body_len:])
    # a dataset of the same name made in another home (another master key)
    other = make_home(tmp_path / "other")
    foreign = store.write_dataset(other.home, other.policy, other.master_key, "a",
                                  [{"t": "A"}], [], {})
    _expect_refused(vhome, "a", Path(foreign.path).read_bytes())
    # the trailer's public summary cannot be edited to lie about counts
    lie = da.replace(b'"train":1', b'"train":2')
    assert lie != da
    _expect_refused(vhome, "a", lie)


def test_wrong_master_key_and_passphrase_are_refused(small: tuple[VaultHome, bytes]) -> None:
    """Another master key fails verification; a wrong passphrase is a PassphraseError."""

    vh, _ = small
    with pytest.raises(IntegrityError):
        store.read_dataset(vh.home, os.urandom(32), "small")
    with pytest.raises(PassphraseError):
        trust.unlock(vh.home, b"not the passphrase", vh.policy)

