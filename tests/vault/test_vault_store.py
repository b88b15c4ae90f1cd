"""The vault store: exact round trips, the dataset digest, names, splits, rm and export."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from vault_helpers import VaultHome, make_home

from appliance.errors import (
    DatasetFormatError,
    IntegrityError,
    PassphraseError,
    PolicyViolation,
    UsageError,
    VaultError,
)
from appliance.vault import crypto, frames, layout, store

CHUNK = crypto.CHUNK_BYTES


def _write(vh: VaultHome, name: str, train: list[Any], eval_: list[Any] | None = None,
           meta: dict[str, Any] | None = None) -> store.DatasetInfo:
    return store.write_dataset(vh.home, vh.policy, vh.master_key, name, train, eval_ or [],
                               meta or {})


def _read(vh: VaultHome, name: str, split: str = "all") -> list[dict[str, Any]]:
    return store.read_dataset(vh.home, vh.master_key, name, split)


def _plaintext_size(train: list[Any], meta: dict[str, Any]) -> int:
    totals = frames.Totals()
    return sum(len(p) for p in frames.frame("0" * 32, meta, train, [], totals))


def _sized_records(target: int) -> list[dict[str, str]]:
    """One ASCII record padded so that the framed plaintext is exactly `target` bytes."""
    base = _plaintext_size([{"t": ""}], {})
    assert target >= base
    return [{"t": "x" * (target - base)}]


@pytest.mark.parametrize("target", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK,
                                    2 * CHUNK + 1, 3 * CHUNK])
def test_boundary_sized_plaintexts_round_trip_exactly(vhome: VaultHome, target: int) -> None:
    """Plaintexts of exact chunk multiples and one byte either side decrypt to the same
    records."""
    records = _sized_records(target)
    assert _plaintext_size(records, {}) == target
    _write(vhome, "b", records)
    assert _read(vhome, "b") == records
    body = store.dataset_info(vhome.home, "b")
    assert body.train_count == 1


def test_empty_dataset_round_trips(vhome: VaultHome) -> None:
    """A dataset with no records in either split reads back as empty lists."""
    info = _write(vhome, "empty", [], [], {"note": "nothing"})
    assert (info.train_count, info.eval_count) == (0, 0)
    for split in ("train", "eval", "all"):
        assert _read(vhome, "empty", split) == []
    meta = store.read_metadata(vhome.home, vhome.master_key, "empty")
    assert meta["metadata"] == {"note": "nothing"}


def test_records_and_metadata_round_trip_with_splits(vhome: VaultHome) -> None:
    """Unicode, nesting and every JSON type survive; splits come back separately."""
    train = [{"text": f"héllo wörld {i} \u2603 \U0001f600", "n": i, "f": i / 3,
              "nested": {"a": [1, None, True, "x\ny"]}} for i in range(50)]
    eval_ = [{"text": "eval only", "n": -1}]
    meta = {"scrub_report": {"pii": {"PERSON": 3}}, "source": "x.jsonl"}
    info = _write(vhome, "mixed", train, eval_, meta)
    assert (info.train_count, info.eval_count) == (50, 1)
    assert _read(vhome, "mixed", "train") == train
    assert _read(vhome, "mixed", "eval") == eval_
    assert _read(vhome, "mixed", "all") == train + eval_
    shown = store.read_metadata(vhome.home, vhome.master_key, "mixed")
    assert shown["metadata"] == meta and shown["verified"] is True
    assert shown["digest"] == info.digest


def test_write_streams_from_generators(vhome: VaultHome) -> None:
    """Records can come from one-shot generators spanning many batches."""
    count = 30_000
    info = store.write_dataset(vhome.home, vhome.policy, vhome.master_key, "gen",
                               ({"i": i, "pad": "p" * 40} for i in range(count)),
                               iter([{"i": -1}]), {})
    assert info.train_count == count
    records = _read(vhome, "gen", "train")
    assert len(records) == count and records[-1]["i"] == count - 1


def test_digest_follows_the_documented_definition(vhome: VaultHome) -> None:
    """The digest is sha256 over the train marker, RFC 8785 train lines, the eval marker
    and RFC 8785 eval lines (docs/vault-format.md); digest_of computes it beforehand."""
    train = [{"b": 1, "a": "é"}, {"z": [1, 2]}]
    eval_ = [{"k": "v"}]
    info = _write(vhome, "d", train, eval_)

    def line(r: dict[str, Any]) -> bytes:
        return rfc8785.dumps(r) + b"\n"

    expect = hashlib.sha256(b'["split","train"]\n' + b"".join(map(line, train))
                            + b'["split","eval"]\n' + b"".join(map(line, eval_)))
    assert info.digest == "sha256:" + expect.hexdigest() == frames.digest_of(train, eval_)
    assert store.dataset_info(vhome.home, "d").digest == info.digest


def test_same_records_give_the_same_digest_but_different_ciphertext(vhome: VaultHome) -> None:
    """Two writes of the same records share a digest; each gets its own key and id."""
    a = _write(vhome, "one", [{"x": 1}])
    b = _write(vhome, "two", [{"x": 1}])
    assert a.digest == b.digest and a.dataset_id != b.dataset_id
    body_a = Path(a.path).read_bytes()
    body_b = Path(b.path).read_bytes()
    assert body_a[-200:] != body_b[-200:]


@pytest.mark.parametrize("bad", [["not", "a", "dict"], "text", 3, {"x": float("nan")},
                                 {"x": {1, 2}}, {"x": "\ud800"}, {"x": 2**60}, {1: "k"}])
def test_bad_records_are_refused_and_leave_nothing(vhome: VaultHome, bad: Any) -> None:
    """A record that is not a JSON object of JSON values is bad input; no file remains."""
    with pytest.raises(DatasetFormatError) as err:
        _write(vhome, "bad", [{"ok": 1}, bad])
    assert err.value.exit_code == 2
    assert sorted(p.name for p in vhome.home.vault_dir.iterdir()) == [".lock"]


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../x", "a b", "x" * 65, "-x"])
def test_bad_names_are_refused(vhome: VaultHome, name: str) -> None:
    """Names that could escape the vault or hide are refused as bad usage (exit 2)."""
    with pytest.raises(UsageError) as err:
        _write(vhome, name, [])
    assert err.value.exit_code == 2


def test_existing_dataset_is_not_replaced(vhome: VaultHome) -> None:
    """Writing a name that exists fails and keeps the original bytes."""
    info = _write(vhome, "keep", [{"v": 1}])
    before = Path(info.path).read_bytes()
    with pytest.raises(VaultError, match="already exists"):
        _write(vhome, "keep", [{"v": 2}])
    assert Path(info.path).read_bytes() == before


def test_unknown_split_and_missing_dataset(vhome: VaultHome) -> None:
    """An unknown split is bad usage; a missing dataset is a clear VaultError."""
    _write(vhome, "s", [{"v": 1}])
    with pytest.raises(UsageError):
        _read(vhome, "s", "test")
    with pytest.raises(VaultError, match="no dataset named 'nope'"):
        _read(vhome, "nope")


def test_list_shows_public_summary_without_key(vhome: VaultHome) -> None:
    """list needs no key and shows names, counts and digests; damaged files are flagged."""
    a = _write(vhome, "a", [{"v": 1}], [{"v": 2}])
    _write(vhome, "b", [])
    (vhome.home.vault_dir / "junk.vault").write_bytes(b"garbage")
    listed = {i.name: i for i in store.list_datasets(vhome.home)}
    assert set(listed) == {"a", "b", "junk"}
    assert listed["a"].digest == a.digest and listed["a"].count == 2
    assert listed["junk"].problem and listed["a"].problem is None


def test_metadata_is_encrypted(vhome: VaultHome) -> None:
    """Metadata strings never appear in the file; the public trailer has counts only."""
    info = _write(vhome, "m", [{"v": 1}], [], {"source": "SECRET-SOURCE-NAME-42"})
    data = Path(info.path).read_bytes()
    assert b"SECRET-SOURCE-NAME-42" not in data
    assert b'"train":1' in data  # the public summary


def test_rm_destroys_the_wrapped_key(vhome: VaultHome) -> None:
    """After rm the file is gone and a hard link kept to it shows the key overwritten."""
    info = _write(vhome, "gone", [{"v": 1}])
    keep = vhome.home.root / "kept-link"
    os.link(info.path, keep)
    with open(info.path, "rb") as handle:
        parsed = layout.parse(handle, os.fstat(handle.fileno()).st_size)
    envelope_before = keep.read_bytes()[parsed.envelope_offset:
                                        parsed.envelope_offset + parsed.envelope_len]
    store.remove_dataset(vhome.home, "gone")
    assert not Path(info.path).exists()
    assert store.list_datasets(vhome.home) == []
    after = keep.read_bytes()
    assert after[parsed.envelope_offset:parsed.envelope_offset + parsed.envelope_len] \
        != envelope_before
    os.replace(keep, info.path)  # even restored, it can no longer be opened
    with pytest.raises(IntegrityError, match="'gone'"):
        _read(vhome, "gone")


def test_rm_of_a_missing_dataset_fails(vhome: VaultHome) -> None:
    """rm names what is missing."""
    with pytest.raises(VaultError, match="no dataset named 'x'"):
        store.remove_dataset(vhome.home, "x")


def test_export_refused_unless_policy_allows(vhome: VaultHome, tmp_path: Path) -> None:
    """export.datasets = "never" refuses export and writes nothing."""
    _write(vhome, "e", [{"v": 1}])
    out = tmp_path / "out.vault"
    with pytest.raises(PolicyViolation):
        store.export_dataset(vhome.home, vhome.policy, vhome.master_key, "e", out,
                             b"recipient passphrase")
    assert not out.exists()


def test_export_rewraps_for_recipient(vhome_export: VaultHome, tmp_path: Path) -> None:
    """An export keeps the ciphertext bytes, opens only with the recipient passphrase, and
    cannot be opened with the home's master key."""
    vh = vhome_export
    train = [{"v": i} for i in range(100)]
    info = _write(vh, "e", train, [{"v": -1}], {"r": 1})
    out = tmp_path / "e.vault"
    store.export_dataset(vh.home, vh.policy, vh.master_key, "e", out, b"recipient pass 1")
    src, dst = Path(info.path).read_bytes(), out.read_bytes()
    with open(info.path, "rb") as handle:
        parsed = layout.parse(handle, len(src))
    assert dst.endswith(src[parsed.body_offset:])
    assert dst.startswith(parsed.prefix)
    meta, records = store.read_export(out, vh.policy, b"recipient pass 1")
    assert meta == {"r": 1} and records == [*train, {"v": -1}]
    with pytest.raises(PassphraseError):
        store.read_export(out, vh.policy, b"wrong recipient pass")
    other = make_home(tmp_path / "other")
    os.replace(out, other.home.vault_dir / "e.vault")
    with pytest.raises(IntegrityError):
        store.read_dataset(other.home, other.master_key, "e")


_json_leaf = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) \
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
_json = st.recursive(_json_leaf, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_record = st.dictionaries(st.text(max_size=10), _json, max_size=5)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(train=st.lists(_record, max_size=8), eval_=st.lists(_record, max_size=3))
def test_any_json_records_round_trip(vhome: VaultHome, train: list[dict[str, Any]],
                                     eval_: list[dict[str, Any]]) -> None:
    """Arbitrary JSON objects (surrogate-free text) come back equal, split by split."""
    name = f"h{len(list(vhome.home.vault_dir.glob('*.vault')))}"
    _write(vhome, name, train, eval_)
    assert _read(vhome, name, "train") == train
    assert _read(vhome, name, "eval") == eval_


def test_deep_verify_recomputes_the_digest(vhome: VaultHome) -> None:
    """A file sealed correctly but carrying a wrong digest (a faulty writer with the key)
    passes the AEAD, and `verify_dataset` catches it by re-hashing the records."""
    good = _write(vhome, "good", [{"v": 1}])
    assert store.verify_dataset(vhome.home, vhome.master_key, "good") == \
        store.dataset_info(vhome.home, "good")
    wrong = "sha256:" + "0" * 64
    identity = {"format": layout.FORMAT_NAME, "version": 1, "dataset_id": "f" * 32,
                "name": "liar", "cipher": "cobblestone256", "created": "2026-01-01T00:00:00"}
    prefix = layout.encode_prefix(identity)
    key = crypto.new_data_key()
    plain = frames.TRAIN_MARK + b'[{"v":1}\n]\n' + frames.EVAL_MARK + b"[]\n"
    head = layout.canonical_json([frames.KIND, 1, {"dataset_id": "f" * 32, "metadata": {}}])
    summary = {"digest": wrong, "eval": 0, "train": 1}
    plain = head + b"\n" + plain + layout.canonical_json(["end", summary]) + b"\n"
    enc = crypto.BodyEncryptor(key, prefix)
    body = enc.update(plain) + enc.finalize()
    envelope = crypto.wrap_for_master(vhome.master_key, key, prefix)
    (vhome.home.vault_dir / "liar.vault").write_bytes(
        prefix + layout.encode_envelope(envelope) + body + layout.encode_trailer(summary))
    assert _read(vhome, "liar") == [{"v": 1}]
    with pytest.raises(IntegrityError, match="'liar'"):
        store.verify_dataset(vhome.home, vhome.master_key, "liar")
    assert good.digest != wrong


def test_load_dataset_returns_both_splits_and_provenance(vhome: VaultHome) -> None:
    """load_dataset gives train, eval, digest, id and metadata from one verified read."""
    info = _write(vhome, "t", [{"q": 1}, {"q": 2}], [{"q": 3}], {"report": {"n": 3}})
    loaded = store.load_dataset(vhome.home, vhome.master_key, "t")
    assert loaded.train == [{"q": 1}, {"q": 2}] and loaded.eval == [{"q": 3}]
    assert (loaded.digest, loaded.dataset_id) == (info.digest, info.dataset_id)
    assert loaded.metadata == {"report": {"n": 3}}
