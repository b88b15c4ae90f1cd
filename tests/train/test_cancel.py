"""Cancelling training with real signals at awkward moments ends within a bounded time:
while the trainer holds its event writer's lock (the old handler deadlocked there), before
the trainer starts, during model load (at once, nothing to save), and with a second
signal (the trainer is killed; the run stays resumable)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from appliance.errors import TrainingError
from appliance.home import Home
from appliance.passphrase import read_passphrase
from appliance.service.train import train
from appliance.train.events import EVENT_FD_ENV
from tests.train.conftest import memory_records, write_recipe
from tests.train.test_training import REPO, _run_id, _start

BOUND_S = 10.0


def _stop_helper(mode: str) -> tuple[subprocess.Popen[bytes], int]:
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "tests.train.stop_helper", mode], cwd=REPO,
                            pass_fds=(write_fd,),
                            env={**os.environ, "PYTHONPATH": str(REPO),
                                 EVENT_FD_ENV: str(write_fd)})
    os.close(write_fd)
    return proc, read_fd


def _read_first_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        assert chunk, "the helper ended before its first event"
        data += chunk
    return data


def _drain(fd: int, proc: subprocess.Popen[bytes], bound: float) -> list[dict[str, Any]]:
    """Everything the helper writes until it exits; fails if that takes over `bound` s."""
    deadline, data = time.monotonic() + bound, b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            proc.kill()
            proc.wait()
            pytest.fail(f"no end within {bound} s of SIGTERM (deadlock)")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            data += chunk
    os.close(fd)
    proc.wait(timeout=bound)
    return [json.loads(line) for line in data.splitlines()]


def test_signal_while_the_writer_lock_is_held_before_any_step_ends_at_once() -> None:
    """The main thread is blocked mid-event (pipe full, writer lock held) when SIGTERM comes:
    the process still ends within the bound, the big event arrives whole, then `signal` and
    `stopped` (before the first step, no checkpoint), exit 3."""
    proc, fd = _stop_helper("blocked")
    assert json.loads(_read_first_line(fd))["type"] == "started"
    time.sleep(0.5)  # the helper fills the pipe and blocks inside the locked write
    proc.send_signal(signal.SIGTERM)
    events = _drain(fd, proc, BOUND_S)
    assert [e["type"] for e in events] == ["big", "signal", "stopped"]
    assert len(events[0]["blob"]) == 1_000_000
    assert events[2]["before_first_step"] is True and events[2]["checkpoint"] is False
    assert proc.returncode == 3


def test_signals_landing_inside_event_writes_never_deadlock() -> None:
    """Twenty times, SIGTERM right after an event is read, while the helper writes events
    in a tight loop (the old handler deadlocked in about 39 runs out of 40 like this): every
    run stops at a boundary within the bound."""
    for _ in range(20):
        proc, fd = _stop_helper("flood")
        _read_first_line(fd)
        _read_first_line(fd)
        proc.send_signal(signal.SIGTERM)
        events = _drain(fd, proc, BOUND_S)
        assert events[-1]["type"] == "stopped" and proc.returncode == 3
        assert [e for e in events if e["type"] == "signal"] != []


def test_cancel_before_the_trainer_starts_writes_nothing(train_home: Home, pass_file: Path,
                                                         tmp_path: Path) -> None:
    """SIGTERM while the records are read (before any child exists): no run is created, the
    cancel is audited, and the caller's SIGTERM handler is back afterwards."""
    seen: list[int] = []

    def ours(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)  # only reached if train() did not take the signal over

    previous = signal.signal(signal.SIGTERM, ours)
    serve = memory_records()

    def provider(*args: Any) -> list[dict[str, Any]]:
        os.kill(os.getpid(), signal.SIGTERM)
        return serve(*args)  # type: ignore[no-any-return]

    try:
        with pytest.raises(TrainingError, match="cancelled before it started"):
            train(train_home, write_recipe(tmp_path / "r.toml"),
                  passphrase=read_passphrase(pass_file), records=provider)
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == []
    assert not train_home.runs_dir.exists() or not any(train_home.runs_dir.iterdir())
    log = [json.loads(x) for x in train_home.audit_log.read_text().splitlines()]
    cancelled = [e for e in log if e["action"] == "train.cancelled"]
    assert len(cancelled) == 1 and cancelled[0]["stage"] == "before start"
    assert "train.start" not in [e["action"] for e in log]


def _events_until(proc: subprocess.Popen[str], kind: str) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{") and json.loads(line)["type"] == kind:
            return
    raise AssertionError(f"the run ended before a {kind} event")


def _finish(proc: subprocess.Popen[str], bound: float) -> tuple[list[dict[str, Any]], str]:
    try:
        out, err = proc.communicate(timeout=bound)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the cancelled run did not end within {bound} s")
    return [json.loads(x) for x in out.splitlines() if x.startswith("{")], err


def test_cancel_during_model_load_ends_at_once(train_home: Home, pass_file: Path,
                                               tmp_path: Path) -> None:
    """SIGTERM as soon as the trainer reports `started` (it then reads the job and loads
    the model): the run ends without evaluating or stepping, with a clean
    cancelled-before-the-first-step outcome, the audit event, and nothing to resume from."""
    proc = _start(train_home, write_recipe(tmp_path / "r.toml", steps=3, ckpt=1), pass_file)
    _events_until(proc, "started")
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGTERM)
    events, err = _finish(proc, 120)
    took = time.monotonic() - started
    assert proc.returncode == 1, err
    assert "cancelled before the first step" in err and "Traceback" not in err
    kinds = [e["type"] for e in events]
    assert "eval" not in kinds and "step" not in kinds and "checkpoint" not in kinds
    assert kinds[-1] == "stopped" and events[-1]["checkpoint"] is False
    run_id = _run_id(train_home)
    assert not (train_home.runs_dir / run_id / "checkpoints").exists()
    log = [json.loads(x) for x in train_home.audit_log.read_text().splitlines()]
    (cancelled,) = [e for e in log if e["action"] == "train.cancelled"]
    assert cancelled["step"] == 0 and cancelled["checkpoint"] is False
    assert took < 60, took


def test_second_signal_kills_the_trainer(train_home: Home, pass_file: Path,
                                         tmp_path: Path) -> None:
    """Two signals 0.3 s apart after the first step: the trainer's process group is
    killed rather than waited for; the outcome is reported and audited as killed."""
    proc = _start(train_home, write_recipe(tmp_path / "r.toml", steps=6, ckpt=100), pass_file)
    _events_until(proc, "step")
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.3)  # apart, or the kernel merges them into one pending signal
    os.kill(proc.pid, signal.SIGTERM)
    _, err = _finish(proc, 120)
    assert proc.returncode == 1
    log = [json.loads(x) for x in train_home.audit_log.read_text().splitlines()]
    (cancelled,) = [e for e in log if e["action"] == "train.cancelled"]
    if "killed by a second signal" in err:
        assert cancelled["outcome"] == "killed"
    else:  # the first signal's checkpoint was written before the second one arrived
        assert "checkpoint saved" in err and cancelled["checkpoint"] is True
