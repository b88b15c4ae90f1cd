"""Verifying an audit log against its signed checkpoints and an optional off-machine anchor.

What counts as verified: the entries a signed checkpoint covers (its Merkle root equals the
root over the first `size` lines). Entries after the newest checkpoint are reported as not
yet covered. The `seq`/`prev` links inside the lines only help name the first bad line; a
tamperer can rewrite them, never the checkpoint signatures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from appliance.audit import logfile, merkle, notes
from appliance.audit.notes import Checkpoint, CheckpointSummary
from appliance.errors import AuditError
from appliance.fsutil import loads_json


@dataclass
class LogReport:
    """The outcome of verifying one audit log."""

    ok: bool
    reason: str
    entries: int
    covered: int
    uncovered: int
    checkpoints: int
    first_bad_line: int | None = None
    latest: CheckpointSummary | None = None
    anchor: CheckpointSummary | None = None
    origin: str = ""
    checkpoint_key: str = ""
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def _chain_problem(lines: list[bytes], torn: bool) -> tuple[int, str] | None:
    """The first line whose sequence number or link to its predecessor is wrong."""
    prev_hash = logfile.GENESIS_PREV
    for number, line in enumerate(lines, 1):
        if torn and number == len(lines):
            return number, f"line {number}: incomplete (torn) entry"
        try:
            entry = loads_json(line)
            seq, prev = entry["seq"], entry["prev"]
        except (ValueError, KeyError, TypeError):
            return number, f"line {number}: not a well-formed audit entry"
        if seq != number:
            return number, (f"line {number}: out of sequence (it says {seq}): an entry was "
                            "inserted, deleted or reordered here")
        if prev != prev_hash:
            bad = max(number - 1, 1)
            return bad, f"line {bad}: altered (line {number} recorded a different hash for it)"
        prev_hash = merkle.leaf_hash(line).hex()
    return None


def _load_checkpoints(stored: list[tuple[str, bytes]], key: Any,
                      origin: str) -> list[Checkpoint]:
    out = []
    for name, note in stored:
        cp = notes.verify(note, key, origin=origin)
        if name != logfile.note_name(cp.size):
            raise AuditError(f"checkpoint file {name} holds a checkpoint of size {cp.size}")
        out.append(cp)
    return sorted(out, key=lambda c: c.size)


def _fail(report: LogReport, line: int | None, reason: str) -> LogReport:
    report.ok = False
    report.problems.append(reason)
    if line is not None and (report.first_bad_line is None or line < report.first_bad_line):
        report.first_bad_line = line
        report.reason = reason
    elif not report.reason:
        report.reason = reason
    return report


def _unmatched(chain: tuple[int, str] | None, covered: int, size: int,
               good: int) -> tuple[int, str]:
    """Name the first bad line among those a checkpoint no longer matches. With intact links,
    only the log's last line is unprotected by a successor, so a plain edit is there; links
    rewritten by hand could hide an earlier edit, hence the range in the message."""
    if chain and chain[0] <= size:
        return chain
    line = size if size == good else covered + 1
    return line, (f"line {line}: does not match the signed checkpoint of size {size} "
                  f"(the first bad line is within lines {covered + 1}..{size})")


def verify_log(lines: list[bytes], torn: bool, stored: list[tuple[str, bytes]], *, key: Any,
               origin: str, anchor_note: bytes | None = None) -> LogReport:
    """Check the log lines against the stored signed notes (and an anchor note)."""
    n = len(lines)
    report = LogReport(True, "", n, 0, n, len(stored), origin=origin)
    try:
        cps = _load_checkpoints(stored, key, origin)
        anchor = notes.verify(anchor_note, key, origin=origin) if anchor_note else None
    except AuditError as exc:
        return _fail(report, None, exc.message)
    chain = _chain_problem(lines, torn)
    good = n - 1 if torn else n
    hashes = [merkle.leaf_hash(line) for line in lines[:good]]
    roots = merkle.roots_at(hashes, [c.size for c in cps])
    covered = 0
    for cp in cps:
        if cp.size > good:
            _fail(report, good + 1, f"line {good + 1}: missing: the log has {good} complete "
                  f"entries but a signed checkpoint covers {cp.size} (truncated)")
            break
        if roots[cp.size] != cp.root:
            _fail(report, *_unmatched(chain, covered, cp.size, good))
            break
        covered = cp.size
        report.latest = cp.as_dict()
    if chain:
        _fail(report, chain[0], chain[1])
    if anchor is not None:
        report.anchor = anchor.as_dict()
        covered = _check_anchor(report, anchor, hashes, covered)
    report.covered = covered if report.ok else 0
    report.uncovered = n - report.covered if report.ok else n
    if report.ok:
        report.reason = (f"intact: {n} entries, {covered} covered by a signed checkpoint, "
                         f"{n - covered} not yet covered")
    return report


def _check_anchor(report: LogReport, anchor: Checkpoint, hashes: list[bytes],
                  covered: int) -> int:
    """RFC 6962 consistency between the anchor and the newest tree we can check."""
    n = len(hashes)
    if anchor.size > n:
        _fail(report, n + 1, f"rollback: the anchor covers {anchor.size} entries but the log "
              f"has {n}")
        return covered
    newest = max(covered, anchor.size)
    new_root = merkle.root_of(hashes[:newest])
    if anchor.size == 0:
        ok = anchor.root == merkle.EMPTY_ROOT
    else:
        proof = merkle.consistency_proof(hashes[:newest], anchor.size)
        ok = merkle.verify_consistency(anchor.size, newest, anchor.root, new_root, proof)
    if not ok:
        _fail(report, None, "rollback or rewrite: the log is not an extension of the anchor "
              f"checkpoint (size {anchor.size})")
        return covered
    return newest
