"""C2SP signed notes and tlog checkpoints, with the golang.org/x/mod/sumdb/note vector."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from appliance.audit import notes
from appliance.audit.notes import Checkpoint
from appliance.errors import AuditError

# From the documentation of golang.org/x/mod/sumdb/note (the reference signed-note code).
GO_PRIVATE = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VERIFIER = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (b"If you think cryptography is the answer to your problem,\n"
           b"then you don't know what your problem is.\n")
GO_SIG = ("x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6Ryy"
          "BwJnAM=")


def _go_key() -> ed25519.Ed25519PrivateKey:
    raw = base64.b64decode(GO_PRIVATE.split("+", 4)[4])
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:])


def test_key_id_and_verifier_key_match_the_go_reference():
    """Key id and verifier key string are computed exactly as the reference does."""
    assert notes.verifier_key("PeterNeumann", _go_key().public_key()) == GO_VERIFIER


def test_signature_line_matches_the_go_reference():
    """Our key id || Ed25519 signature over the same text equals the reference signature."""
    key = _go_key()
    blob = notes.key_id("PeterNeumann", key.public_key()) + key.sign(GO_TEXT)
    assert base64.b64encode(blob).decode() == GO_SIG


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    """A fresh checkpoint key."""
    return ed25519.Ed25519PrivateKey.generate()


def test_checkpoint_round_trips_in_tlog_checkpoint_format(key):
    """A signed checkpoint has origin, size, base64 root, blank line, em-dash signature."""
    cp = Checkpoint("example.org/log", 7, bytes(range(32)))
    note = notes.sign(cp, key)
    lines = note.decode().split("\n")
    assert lines[:4] == ["example.org/log", "7", base64.b64encode(bytes(range(32))).decode(), ""]
    assert lines[4].startswith("\u2014 example.org/log ")
    assert notes.verify(note, key.public_key(), origin="example.org/log") == cp


def _flip_signature_char(note: bytes) -> bytes:
    """Change one base64 character in the middle of the signature (always a real change)."""
    i = len(note) - 20
    return note[:i] + (b"B" if note[i:i + 1] == b"A" else b"A") + note[i + 1:]


@pytest.mark.parametrize("edit", [
    lambda n: n.replace(b"\n7\n", b"\n8\n"),
    lambda n: n.replace(b"example.org/log\n", b"example.org/lag\n", 1),
    _flip_signature_char,
    lambda n: n.split(b"\n\n")[0] + b"\n",
    lambda n: n + b"x" * 9000,
])
def test_altered_checkpoints_are_rejected(key, edit):
    """Changing the size, origin or signature, or dropping it, fails verification."""
    note = notes.sign(Checkpoint("example.org/log", 7, bytes(32)), key)
    edited = edit(note)
    assert edited != note
    with pytest.raises(AuditError):
        notes.verify(edited, key.public_key())


def test_checkpoint_by_another_key_or_for_another_log_is_rejected(key):
    """A note signed by another key, or naming another origin, does not verify."""
    note = notes.sign(Checkpoint("example.org/log", 1, bytes(32)), key)
    with pytest.raises(AuditError):
        notes.verify(note, ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(AuditError, match="another log"):
        notes.verify(note, key.public_key(), origin="example.org/other")
