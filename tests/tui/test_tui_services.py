"""The service functions the console reads through: policy describe/diff, overview, audit
browsing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.errors import PolicyError
from appliance.home import Home
from appliance.resources import shipped_policy
from appliance.service.audit_view import read_events
from appliance.service.overview import audit_summary, key_files, latest_runs
from appliance.service.policy import (
    ABSENT,
    active_policy,
    describe_policy,
    diff_policies,
    read_policy,
)


def _edited_default(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    """The shipped default policy with text replacements applied, as a new file."""
    text = shipped_policy("default").read_text()
    for old, new in edits:
        assert old in text
        text = text.replace(old, new, 1)
    path = tmp_path / "edited.toml"
    path.write_text(text)
    return path


def test_diff_lists_each_changed_key_with_old_and_new(tmp_path: Path) -> None:
    """Changed dotted keys appear once each with active -> other values; equal keys do not."""
    other = _edited_default(tmp_path, ("eval_fraction = 0.1", "eval_fraction = 0.25"),
                            ('PERSON = "pseudonym"', 'PERSON = "mask"\nPHONE_NUMBER = "redact"'))
    changes = {c.key: (c.old, c.new) for c in diff_policies(shipped_policy("default"), other)}
    assert changes == {"training.eval_fraction": ("0.1", "0.25"),
                       "pii.operators.PERSON": ('"pseudonym"', '"mask"'),
                       "pii.operators.PHONE_NUMBER": (ABSENT, '"redact"')}
    back = {c.key: (c.old, c.new) for c in diff_policies(other, shipped_policy("default"))}
    assert back["pii.operators.PHONE_NUMBER"] == ('"redact"', ABSENT)


def test_diff_ignores_defaults_written_out_or_omitted(tmp_path: Path) -> None:
    """Omitting a key whose value is the default is no change (effective policies compare)."""
    minimal = _edited_default(tmp_path, ("split_seed = 0", ""))
    assert diff_policies(shipped_policy("default"), minimal) == []


def test_diff_shipped_default_and_demo() -> None:
    """default -> demo shows the demo's lighter limits, as `policy hash` would disagree."""
    keys = {c.key for c in diff_policies(shipped_policy("default"), shipped_policy("demo"))}
    assert {"meta.name", "training.limits.max_steps"} <= keys


def test_diff_of_an_invalid_file_raises_policy_error(tmp_path: Path) -> None:
    """A malformed policy is refused with the usual PolicyError listing its problems."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[meta]\nname = "x"\n[intake]\nmax_records = "many"\n')
    with pytest.raises(PolicyError) as info:
        diff_policies(shipped_policy("default"), bad)
    assert any("intake.max_records" in p for p in info.value.problems)


def test_describe_policy_gives_every_leaf_with_its_docstring() -> None:
    """Each effective setting is listed once, and documented fields carry their docstring."""
    entries = describe_policy(read_policy(shipped_policy("default")))
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys))
    docs = {e.key: e.doc for e in entries}
    assert docs["meta.name"].startswith("Short name")
    assert sum(1 for e in entries if e.doc) >= len(entries) * 0.9


def test_active_policy_prefers_the_home_then_the_shipped_default(home: Home) -> None:
    """An initialised home's active.toml is in force; a bare home falls back to the default."""
    assert active_policy(home).name == "snapshot"
    assert active_policy(home).source == "home"
    bare = active_policy(Home(Path("nowhere")))
    assert (bare.name, bare.source) == ("default", "shipped default")


def test_key_files_are_listed_by_kind_never_read(home: Home) -> None:
    """Key files are classified by name; hidden files are skipped."""
    (home.keys_dir / ".lock").write_text("")
    assert [(k.name, k.kind) for k in key_files(home)] == [
        ("signing.pub.pem", "public"), ("signing.sealed.json", "sealed"),
        ("vault-master.sealed.json", "sealed")]


def test_audit_summary_counts_entries_and_skips_a_torn_tail(home: Home) -> None:
    """An unterminated last line is not counted; the newest events come first."""
    with home.audit_log.open("a") as log:
        log.write('{"action": "torn')
    summary = audit_summary(home, last=2)
    assert summary.entries == 5
    assert [e.action for e in summary.last] == ["artifact.verified", "train.finish"]


def test_latest_runs_newest_first_and_no_symlinks(home: Home, tmp_path: Path) -> None:
    """Artifacts are listed newest first with their signature state; symlinks and hidden
    directories (training's .staging) are not runs."""
    os.symlink(tmp_path, home.artifacts_dir / "evil")
    (home.artifacts_dir / ".staging").mkdir()
    runs = latest_runs(home)
    assert [(r.run_id, r.signed) for r in runs] == [("run-0002", False), ("run-0001", True)]


def test_read_events_filters_words_and_fields(home: Home) -> None:
    """Words match anywhere; key=value matches one field exactly; newest first."""
    assert [e.line for e in read_events(home).events] == [5, 4, 3, 2, 1]
    failed = read_events(home, "outcome=failed")
    assert (failed.matched, failed.total, failed.events[0].action) == (1, 5, "train.finish")
    assert [e.line for e in read_events(home, "run-0002 train").events] == [4, 3]
    assert read_events(home, "run=run-0001").matched == 0
    assert read_events(home, "artifact=run-0001").matched == 1


def test_read_events_flags_unreadable_lines_and_limits(home: Home) -> None:
    """A line that is not a JSON object shows as unreadable; `limit` caps what is returned."""
    with home.audit_log.open("a") as log:
        log.write("not json\n")
    page = read_events(home, limit=2)
    assert (page.total, page.matched, len(page.events)) == (6, 6, 2)
    assert not page.events[0].readable
