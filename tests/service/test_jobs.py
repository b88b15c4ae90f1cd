"""Child jobs: the console's long work runs in a niced child; the passphrase goes through an
inherited pipe, never argv, environment or disk."""

from __future__ import annotations

import os
import time
from pathlib import Path

from appliance.home import Home
from appliance.resources import shipped_policy
from appliance.service.jobs import NICENESS, ChildJob

PASSPHRASE = b"correct horse battery staple"


def test_init_through_the_passphrase_pipe_then_wrong_passphrase_is_one_line(
        tmp_path: Path) -> None:
    """`init` in a child reads the passphrase from the pipe; a later command with another
    passphrase fails with the CLI's one error line, which reaches the console as the child's
    final `failed` JSON event (its standard error is not parsed)."""
    home = Home(tmp_path / "home")
    job = ChildJob(home, ["init", "--policy", str(shipped_policy("demo"))], passphrase=PASSPHRASE)
    job.start()
    assert job.proc is not None
    argv = " ".join(job.proc.args)  # type: ignore[arg-type]
    assert PASSPHRASE.decode() not in argv and "/dev/fd/" in argv
    outcome = job.wait(120)
    assert outcome.ok, outcome.error
    assert home.marker.is_file()
    assert not any(PASSPHRASE in p.read_bytes() for p in home.root.rglob("*") if p.is_file())

    bad = ChildJob(home, ["audit", "export", "--out", str(tmp_path / "bundle"), "--json"],
                   passphrase=b"not the passphrase at all")
    bad.start()
    events = list(bad.events())
    outcome = bad.wait(120)
    assert not outcome.ok and outcome.returncode == 1
    assert outcome.error is not None and "passphrase" in outcome.error.lower()
    assert not outcome.error.startswith("appliance:") and "\n" not in outcome.error
    assert outcome.message == outcome.error
    assert all(e.get("type") != "failed" for e in events)  # kept for the outcome


def test_job_runs_niced(tmp_path: Path) -> None:
    """The child runs at lower priority than the console."""
    home = Home(tmp_path / "home")
    job = ChildJob(home, ["init", "--policy", str(shipped_policy("demo"))],
                   passphrase=PASSPHRASE)
    job.start()
    assert job.proc is not None
    deadline = time.monotonic() + 5
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    seen = mine
    while time.monotonic() < deadline and job.running:
        seen = os.getpriority(os.PRIO_PROCESS, job.proc.pid)
        if seen == mine + NICENESS:
            break
        time.sleep(0.01)
    assert seen == min(mine + NICENESS, 19)
    assert job.wait(120).ok
