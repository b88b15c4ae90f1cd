"""RFC 6962 Merkle hashing and proofs, checked against published vectors and by exhaustion.

Vectors: the eight-leaf tree of the certificate-transparency reference implementation's
merkle_tree_test (also used by transparency-dev/merkle's testdata): leaves below, roots of
every prefix, and three consistency proofs.
"""

from __future__ import annotations

import hashlib

import pytest

from appliance.audit import merkle

LEAVES = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31", b"\x40\x41\x42\x43",
          bytes(range(0x50, 0x58)), bytes(range(0x60, 0x70))]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CONSISTENCY = {
    (1, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}
HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]


def test_empty_tree_root_is_sha256_of_nothing():
    """The root of an empty tree is SHA-256 of the empty string."""
    assert merkle.root_of([]) == hashlib.sha256(b"").digest()


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_match_reference_vectors(size):
    """Every prefix root equals the reference implementation's."""
    assert merkle.root_of(HASHES[:size]).hex() == ROOTS[size - 1]


def test_one_pass_roots_equal_recursive_roots():
    """The compact-range roots equal the recursive definition at every size."""
    hashes = [merkle.leaf_hash(bytes([i])) for i in range(70)]
    roots = merkle.roots_at(hashes, range(71))
    assert all(roots[n] == merkle.root_of(hashes[:n]) for n in range(71))


@pytest.mark.parametrize(("old", "new"), sorted(CONSISTENCY))
def test_consistency_proofs_match_reference_vectors(old, new):
    """Generated proofs equal the published ones and verify."""
    proof = merkle.consistency_proof(HASHES[:new], old)
    assert [p.hex() for p in proof] == CONSISTENCY[(old, new)]
    assert merkle.verify_consistency(old, new, bytes.fromhex(ROOTS[old - 1]),
                                     bytes.fromhex(ROOTS[new - 1]), proof)


def test_consistency_proofs_verify_for_every_pair_and_fail_when_altered():
    """Every (m, n) proof up to 33 leaves verifies; a flipped node or wrong root fails."""
    hashes = [merkle.leaf_hash(b"leaf %d" % i) for i in range(33)]
    for new in range(1, 34):
        new_root = merkle.root_of(hashes[:new])
        for old in range(1, new + 1):
            old_root = merkle.root_of(hashes[:old])
            proof = merkle.consistency_proof(hashes[:new], old)
            assert merkle.verify_consistency(old, new, old_root, new_root, proof)
            assert not merkle.verify_consistency(old, new, old_root, b"\x01" * 32, proof)
            if proof:
                bad = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
                assert not merkle.verify_consistency(old, new, old_root, new_root, bad)


def test_rewritten_history_has_no_valid_consistency_proof():
    """A tree whose first leaves differ is not consistent with the old root."""
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(10)]
    forged = [merkle.leaf_hash(b"forged"), *hashes[1:]]
    old_root = merkle.root_of(hashes[:4])
    proof = merkle.consistency_proof(forged, 4)
    assert not merkle.verify_consistency(4, 10, old_root, merkle.root_of(forged), proof)


def test_inclusion_proofs_verify_and_reject_other_leaves():
    """Every leaf's inclusion proof verifies; the same proof fails for another leaf."""
    hashes = [merkle.leaf_hash(b"%d" % i) for i in range(13)]
    root = merkle.root_of(hashes)
    for i in range(13):
        proof = merkle.inclusion_proof(hashes, i)
        assert merkle.verify_inclusion(i, 13, hashes[i], root, proof)
        assert not merkle.verify_inclusion(i, 13, hashes[(i + 1) % 13], root, proof)


def test_inclusion_agrees_with_sigstore_rfc6962_verifier():
    """sigstore-python's independent RFC 6962 inclusion code accepts our proofs' roots."""
    from sigstore._internal import merkle as sigstore_merkle

    assert sigstore_merkle._hash_leaf(b"abc") == merkle.leaf_hash(b"abc")
