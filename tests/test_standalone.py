"""The repository stands on its own: no tracked file points outside it (a clone has only
what is tracked), every `docs/...` page a file names exists, and no comment sends the
reader to a tracker the repository does not contain."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = re.compile("|".join(re.escape(p) for p in
                              ("../" + "shared", "shared/" + "contract", "shared/" + "references")))
DOC_LINK = re.compile(r"\bdocs/[\w.-]+\.(?:md|json)\b")
ISSUE = re.compile(r"\b[Ii]ssue[s]? #?\d+")
TEXT = (".py", ".md", ".toml", ".sh", ".in", ".tcss", ".cfg", ".txt", ".json", ".jsonl")


def tracked_text_files() -> list[Path]:
    """Tracked text files outside vendor_wheels/ (the lock names only packages), but for
    this file, whose examples would match."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    names = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z"], check=True,
                           capture_output=True).stdout.decode().split("\0")
    return [REPO / n for n in names if n and not n.startswith("vendor_wheels/")
            and (n.endswith(TEXT) or "/" not in n) and (REPO / n).is_file()
            and REPO / n != Path(__file__).resolve()]


def offending(pattern: re.Pattern[str], paths: list[Path]) -> list[str]:
    """`file:line: text` for every line of `paths` that matches `pattern`."""
    hits = []
    for path in paths:
        for number, line in enumerate(path.read_text("utf-8", "replace").splitlines(), 1):
            if pattern.search(line):
                name = path.relative_to(REPO) if path.is_relative_to(REPO) else path
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    return hits


def test_no_tracked_file_points_outside_the_repository() -> None:
    """No file names the workspace's shared folder (a clone does not have it)."""
    assert offending(OUTSIDE, tracked_text_files()) == []


def test_every_named_docs_page_exists() -> None:
    """Each `docs/NAME.md` (or `.json`) a tracked file names is in the repository."""
    named = {m for p in tracked_text_files()
             for m in DOC_LINK.findall(p.read_text("utf-8", "replace"))}
    assert "docs/interface.md" in named
    assert sorted(n for n in named if not (REPO / n).is_file()) == []


def test_no_comment_cites_an_issue_number() -> None:
    """Code, scripts and docs explain themselves instead of citing `issue N` of a tracker
    the repository does not carry (test data is left alone)."""
    paths = [p for p in tracked_text_files() if not p.is_relative_to(REPO / "tests" / "data")
             and not p.is_relative_to(REPO / "appliance" / "data")]
    assert offending(ISSUE, paths) == []


def test_the_checks_find_what_they_look_for(tmp_path: Path) -> None:
    """A file that names the shared folder, a missing page and an issue is reported."""
    bad = tmp_path / "bad.md"
    shared = "/".join(("..", "shared", "contract.md"))
    bad.write_text(f"see {shared}\nfixed in issue 8\nsee docs/absent.md\n")
    assert len(offending(OUTSIDE, [bad])) == 1 and len(offending(ISSUE, [bad])) == 1
    assert DOC_LINK.findall(bad.read_text()) == ["docs/absent.md"]
