"""The audit log: events, tamper evidence against signed checkpoints, anchors, bundles."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import audit, keys, trust
from appliance.audit import logfile, notes
from appliance.errors import IntegrityError
from appliance.home import Home
from appliance.policy import load_policy
from appliance.service import audit as service

REPO = Path(__file__).resolve().parents[2]


def _lines(home: Home) -> list[bytes]:
    return home.audit_log.read_bytes().split(b"\n")[:-1]


def _write(home: Home, lines: list[bytes]) -> None:
    home.audit_log.write_bytes(b"".join(line + b"\n" for line in lines))


def _fill(home: Home, passphrase: bytes, total: int) -> None:
    """Records events until the log has `total` lines, then covers them all."""
    audit.unlock(home, passphrase)
    while len(_lines(home)) < total:
        audit.record(home, "test.event", count=len(_lines(home)))
    audit.checkpoint(home)
    trust.forget(home)


def _verify(home: Home, anchor: Path | None = None) -> dict:
    from appliance.audit.verify import verify_log

    key = keys.checkpoint_public_key(home)
    lines, torn = logfile.read_lines(home.audit_log)
    stored = logfile.checkpoint_notes(logfile.checkpoints_dir(home))
    return verify_log(lines, torn, stored, key=key,
                      origin=notes.origin_for(keys.fingerprint(key)),
                      anchor_note=anchor.read_bytes() if anchor else None).as_dict()


def test_events_carry_time_actor_action_outcome_and_chain_links(initialised_home):
    """Every line has time, actor, action, outcome, seq and prev; init wrote two events."""
    audit.record(initialised_home, "dataset.imported", outcome="ok", records=3,
                 digest="sha256:" + "ab" * 32)
    entries = [json.loads(line) for line in _lines(initialised_home)]
    assert [e["action"] for e in entries] == ["home.created", "policy.loaded",
                                              "dataset.imported"]
    assert [e["seq"] for e in entries] == [1, 2, 3]
    assert entries[0]["prev"] == "0" * 64
    assert {"time", "actor", "outcome"} <= set(entries[2])
    assert entries[2]["records"] == 3 and entries[2]["digest"] == "sha256:" + "ab" * 32


def test_fresh_home_verifies_with_init_entries_covered(initialised_home):
    """Init signs a checkpoint over its own entries; later entries are uncovered, not verified."""
    report = service.verify_home(initialised_home)
    assert report["ok"] and report["covered"] == 2 and report["uncovered"] == 0
    again = service.verify_home(initialised_home)  # the first verify left one more entry
    assert again["ok"] and again["entries"] == 3 and again["covered"] == 2
    assert again["uncovered"] == 1 and "not yet covered" in again["reason"]


def test_checkpoints_follow_the_policy_interval(initialised_home, passphrase):
    """With the key unlocked, a checkpoint is signed every checkpoint_interval entries."""
    audit.unlock(initialised_home, passphrase)
    for i in range(9):
        audit.record(initialised_home, "test.event", i=i)
    trust.forget(initialised_home)
    sizes = [int(name[:12]) for name, _ in
             logfile.checkpoint_notes(logfile.checkpoints_dir(initialised_home))]
    assert sizes == [2, 6, 10]


def test_clean_shutdown_signs_a_final_checkpoint(initialised_home, passphrase):
    """A process that unlocked the key covers its entries when it exits normally."""
    code = ("import sys; from pathlib import Path; from appliance import audit; "
            "from appliance.home import Home; h = Home(Path(sys.argv[1])); "
            "audit.unlock(h, sys.argv[2].encode()); audit.record(h, 'run.finished')")
    subprocess.run([sys.executable, "-c", code, str(initialised_home.root),
                    passphrase.decode()], check=True, env={"PYTHONPATH": str(REPO)})
    assert logfile.latest_size(initialised_home) == 3
    assert _verify(initialised_home)["uncovered"] == 0


def _edit(lines, j):
    lines[j - 1] = lines[j - 1].replace(b'"outcome":"ok"', b'"outcome":"no"')
    return lines


MUTATIONS = {
    # name: (mutate(lines) -> lines, expected first bad line), on a 12-line log covered at 12
    "edit line 1": (lambda ls: _edit(ls, 1), 1),
    "edit line 5": (lambda ls: _edit(ls, 5), 5),
    "edit line 11": (lambda ls: _edit(ls, 11), 11),
    "edit last line": (lambda ls: _edit(ls, 12), 12),
    "delete line 1": (lambda ls: ls[1:], 1),
    "delete line 7": (lambda ls: ls[:6] + ls[7:], 7),
    "insert a copy at 4": (lambda ls: [*ls[:3], ls[8], *ls[3:]], 4),
    "duplicate line 9": (lambda ls: [*ls[:9], ls[8], *ls[9:]], 10),
    "swap lines 3 and 4": (lambda ls: [*ls[:2], ls[3], ls[2], *ls[4:]], 3),
    "reverse the log": (lambda ls: ls[::-1], 1),
    "truncate to 10": (lambda ls: ls[:10], 11),
    "truncate to 0": (lambda ls: [], 1),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_tampering_is_detected_and_the_first_bad_line_named(initialised_home, passphrase, name):
    """Edits, inserts, deletes, reorders, truncation below a checkpoint: fail at the right line."""
    _fill(initialised_home, passphrase, 12)
    assert _verify(initialised_home)["ok"]
    mutate, expected = MUTATIONS[name]
    _write(initialised_home, mutate(_lines(initialised_home)))
    report = _verify(initialised_home)
    assert not report["ok"]
    assert report["first_bad_line"] == expected, report["reason"]
    assert report["covered"] == 0


def test_a_forged_insert_with_recomputed_links_still_fails_the_checkpoint(initialised_home,
                                                                          passphrase):
    """Rewriting seq/prev of every later line cannot match the signed Merkle root."""
    from appliance.audit import merkle

    _fill(initialised_home, passphrase, 8)
    lines = [json.loads(line) for line in _lines(initialised_home)]
    lines.insert(3, {**lines[3], "action": "forged"})
    out, prev = [], "0" * 64
    for seq, entry in enumerate(lines, 1):
        raw = json.dumps({**entry, "seq": seq, "prev": prev}, sort_keys=True,
                         separators=(",", ":")).encode()
        out.append(raw)
        prev = merkle.leaf_hash(raw).hex()
    _write(initialised_home, out)
    report = _verify(initialised_home)
    assert not report["ok"] and "checkpoint" in report["reason"]


def test_uncovered_tail_is_reported_not_verified(initialised_home, passphrase):
    """Entries after the newest checkpoint are counted as uncovered; editing the last one
    of them cannot be proven either way, and is not claimed as verified."""
    _fill(initialised_home, passphrase, 6)
    audit.record(initialised_home, "dataset.listed")
    audit.record(initialised_home, "dataset.listed")
    report = _verify(initialised_home)
    assert report["ok"] and report["covered"] == 6 and report["uncovered"] == 2
    lines = _lines(initialised_home)
    lines[6] = lines[6].replace(b"dataset.listed", b"dataset.lasted")
    _write(initialised_home, lines)
    assert _verify(initialised_home)["first_bad_line"] == 7  # the link from line 8 catches it


def test_torn_last_line_is_named(initialised_home):
    """A final line without its newline (a crashed writer) is reported."""
    with open(initialised_home.audit_log, "ab") as handle:
        handle.write(b'{"action":"half')
    report = _verify(initialised_home)
    assert not report["ok"] and report["first_bad_line"] == 3


def test_writer_after_a_torn_line_keeps_later_entries_parseable(initialised_home):
    """An append after a torn tail starts on a new line."""
    with open(initialised_home.audit_log, "ab") as handle:
        handle.write(b'{"action":"half')
    audit.record(initialised_home, "after.crash")
    lines = _lines(initialised_home)
    assert json.loads(lines[-1])["action"] == "after.crash" and json.loads(lines[-1])["seq"] == 4


def test_forged_or_foreign_checkpoint_files_fail(initialised_home):
    """A checkpoint signed by another key, or renamed, makes verification fail."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    cp_dir = logfile.checkpoints_dir(initialised_home)
    real = (cp_dir / logfile.note_name(2)).read_bytes()
    origin = real.split(b"\n")[0].decode()
    forged = notes.sign(notes.Checkpoint(origin, 2, b"\x00" * 32),
                        ed25519.Ed25519PrivateKey.generate())
    (cp_dir / logfile.note_name(2)).write_bytes(forged)
    assert not _verify(initialised_home)["ok"]
    (cp_dir / logfile.note_name(2)).write_bytes(real)
    (cp_dir / logfile.note_name(2)).rename(cp_dir / logfile.note_name(1))
    assert not _verify(initialised_home)["ok"]


def _anchor(home: Home, passphrase: bytes, tmp_path: Path) -> Path:
    out = tmp_path / "anchor.note"
    service.checkpoint_now(home, passphrase, out)
    trust.forget(home)
    return out


def test_anchor_accepts_an_extended_log(initialised_home, passphrase, tmp_path):
    """A log that grew since the anchor is consistent with it (RFC 6962 proof)."""
    anchor = _anchor(initialised_home, passphrase, tmp_path)
    _fill(initialised_home, passphrase, 11)
    report = _verify(initialised_home, anchor)
    assert report["ok"] and report["anchor"]["size"] == 3 and report["covered"] == 11


def test_anchor_detects_rollback_that_local_checks_miss(initialised_home, passphrase, tmp_path):
    """Truncating the log and deleting newer checkpoints passes local checks, not the anchor."""
    _fill(initialised_home, passphrase, 5)
    anchor = _anchor(initialised_home, passphrase, tmp_path)
    _fill(initialised_home, passphrase, 9)
    _write(initialised_home, _lines(initialised_home)[:2])
    for name, _ in logfile.checkpoint_notes(logfile.checkpoints_dir(initialised_home)):
        if int(name[:12]) > 2:
            (logfile.checkpoints_dir(initialised_home) / name).unlink()
    assert _verify(initialised_home)["ok"]  # locally indistinguishable from a young log
    report = _verify(initialised_home, anchor)
    assert not report["ok"] and "rollback" in report["reason"]


def test_anchor_detects_history_rewritten_by_a_key_holder(initialised_home, passphrase,
                                                          tmp_path):
    """Even re-signed checkpoints over a rewritten log are inconsistent with the anchor."""
    _fill(initialised_home, passphrase, 6)
    anchor = _anchor(initialised_home, passphrase, tmp_path)
    lines = _lines(initialised_home)
    lines[1] = lines[1].replace(b"policy.loaded", b"policy.loadee")
    _write(initialised_home, lines)
    for path in logfile.checkpoints_dir(initialised_home).iterdir():
        path.unlink()
    policy = load_policy(initialised_home.policy_file)
    key = keys.load_checkpoint_key(initialised_home, passphrase, policy)
    audit._SIGNERS[initialised_home.root] = audit._Signer(
        key, notes.origin_for(keys.fingerprint(key.public_key())), 100)
    audit.checkpoint(initialised_home)
    trust.forget(initialised_home)
    local = _verify(initialised_home)
    assert not local["ok"]  # the chain link still names line 2
    report = _verify(initialised_home, anchor)
    assert not report["ok"] and any("anchor" in p for p in report["problems"])


def test_concurrent_writer_processes_never_corrupt_the_log(initialised_home, passphrase):
    """Four writers appending at once (one also signing checkpoints) leave a valid chain."""
    code = ("import sys; from pathlib import Path; from appliance import audit; "
            "from appliance.home import Home; h = Home(Path(sys.argv[1])); "
            "sys.argv[3] and audit.unlock(h, sys.argv[3].encode()); "
            "[audit.record(h, 'load.test', writer=int(sys.argv[2]), i=i) for i in range(40)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(initialised_home.root), str(w),
                               passphrase.decode() if w == 0 else ""],
                              env={"PYTHONPATH": str(REPO)}) for w in range(4)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = [json.loads(line) for line in _lines(initialised_home)]
    assert len(entries) == 2 + 160
    assert [e["seq"] for e in entries] == list(range(1, 163))
    for w in range(4):
        assert [e["i"] for e in entries if e.get("writer") == w] == list(range(40))
    report = _verify(initialised_home)
    assert report["ok"] and report["covered"] >= 2


def test_bundle_verifies_elsewhere_and_detects_tampering(initialised_home, passphrase,
                                                         tmp_path):
    """An exported bundle verifies without the home; an edited bundle log fails."""
    bundle = tmp_path / "bundle"
    summary = service.export_bundle(initialised_home, bundle, passphrase)
    trust.forget(initialised_home)
    assert summary["entries"] == 3 and (bundle / "keys" / keys.SIGNING_PUBLIC).is_file()
    report = service.verify_bundle(bundle, trusted_key=summary["checkpoint_key"])
    assert report["ok"] and report["uncovered"] == 0
    log = (bundle / "log.jsonl").read_bytes().replace(b"home.created", b"home.crated")
    (bundle / "log.jsonl").write_bytes(log)
    assert service.verify_bundle(bundle)["first_bad_line"] == 1


def test_bundle_with_a_substituted_key_fails_a_pinned_fingerprint(initialised_home, passphrase,
                                                                  tmp_path):
    """An auditor who pins the checkpoint key notices a bundle signed by another key."""
    from appliance.errors import AuditError

    bundle = tmp_path / "bundle"
    service.export_bundle(initialised_home, bundle, None)
    with pytest.raises(AuditError):
        service.verify_bundle(bundle, trusted_key="sha256:" + "0" * 64)


def test_a_replaced_checkpoint_key_is_noticed(initialised_home, passphrase):
    """Swapping the home's checkpoint public key (to re-sign history) fails verification."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from appliance.audit import merkle

    other = ed25519.Ed25519PrivateKey.generate()
    (initialised_home.keys_dir / keys.CHECKPOINT_PUBLIC).write_bytes(
        keys.public_pem(other.public_key()))
    for path in logfile.checkpoints_dir(initialised_home).iterdir():
        path.unlink()
    lines = _lines(initialised_home)
    cp = notes.Checkpoint(notes.origin_for(keys.fingerprint(other.public_key())), len(lines),
                          merkle.root_of([merkle.leaf_hash(x) for x in lines]))
    logfile.store_note(initialised_home, cp.size, notes.sign(cp, other))
    assert _verify(initialised_home)["ok"]  # self-consistent under the substituted key
    with pytest.raises(IntegrityError, match=r"checkpoint public key .*init recorded"):
        service.verify_home(initialised_home)  # refused before the log is even read


def test_record_accepts_any_field_name_and_a_missing_home_directory(tmp_path):
    """A field called `event` is kept, and recording into a new home creates the log."""
    home = Home(tmp_path / "fresh")
    audit.record(home, "dataset.listed", event="x", count=0)
    entry = json.loads(_lines(home)[0])
    assert entry["action"] == "dataset.listed" and entry["event_"] == "x"
