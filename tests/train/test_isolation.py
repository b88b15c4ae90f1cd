"""Training isolation with the real mechanisms: from inside the trainer child, connects to
a loopback listener the parent owns fail by every route (threads included) and are audited
as attempts; a real NF4 pass makes no network attempt; no sandbox means no training; and,
measured from the host during a real `appliance train` and `export merge`, every process
that maps libtorch is sandboxed while the CLI process never imports the ML stack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.home import Home
from appliance.offline import OFFLINE_ENV
from appliance.service.train import probe_isolation
from tests.train.conftest import write_recipe


def _audit(home: Home) -> list[dict[str, object]]:
    return [json.loads(line) for line in home.audit_log.read_text().splitlines()]


@pytest.mark.netns
def test_every_route_out_of_the_trainer_fails_and_is_audited(
        tmp_path: Path, listener: tuple[int, list[object]]) -> None:
    """socket, _socket, ctypes connect and a child process, each also from a thread: none
    reaches the parent's listener, and the attempts are in the audit log."""
    port, accepted = listener
    # Sanity: the listener is reachable from outside the namespace.
    with socket.create_connection(("127.0.0.1", port), timeout=3):
        pass
    home = Home(tmp_path / "home")
    events = probe_isolation(home, "network", host="127.0.0.1", port=port)
    started = next(e for e in events if e["type"] == "started")
    assert started["interfaces"] == ["lo"]
    assert started["offline"] == OFFLINE_ENV
    probes = [e for e in events if e["type"] == "probe"]
    assert {(e["route"], e["thread"]) for e in probes} == {
        (r, t) for r in ("socket", "_socket", "ctypes", "child_process") for t in (False, True)}
    for event in probes:
        assert event["outcome"] != "connected", event
        # the sandbox's own loopback is up and nothing listens there: the host's is unseen
        assert any(word in event["outcome"] for word in
                   ("ECONNREFUSED", "refused", "ENETUNREACH", "unreachable")), event
    assert len(accepted) == 1  # only the sanity connection above
    log = _audit(home)
    blocked = [e for e in log if e["action"] == "network.attempt"]
    # The audit chain redacts IP addresses (identifiers) in every value; the port stays.
    target = f"[REDACTED:IP_ADDRESS]:{port}"
    assert "127.0.0.1" not in home.audit_log.read_text()
    connects = [e for e in blocked if e["via"] == "socket.connect" and e["target"] == target]
    assert {e["thread"] for e in connects} == {"MainThread", "probe-socket", "probe-_socket"}
    ctypes_hits = {(e["target"], e["thread"]) for e in blocked if e["via"] == "ctypes.dlsym"}
    assert {("connect", "MainThread"), ("connect", "probe-ctypes")} <= ctypes_hits
    spawns = [e for e in log if e["action"] == "trainer.process_spawn"]
    assert {e["thread"] for e in spawns} == {"MainThread", "probe-child_process"}
    assert {e["outcome"] for e in log} == {"attempted"}  # never "blocked"


@pytest.mark.netns
def test_nf4_forward_pass_reaches_for_no_network(tmp_path: Path,
                                                 converted_model: Path) -> None:
    """bitsandbytes on CPU looks for an optional `kernels` package from a hub: a real NF4
    forward and backward pass of the base model triggers no socket attempt at all."""
    home = Home(tmp_path / "home")
    events = probe_isolation(home, "nf4", model_dir=str(converted_model / "weights"))
    probe = next(e for e in events if e["type"] == "probe")
    assert probe["outcome"].startswith("ok") and "Linear4bit" in probe["outcome"]
    assert [e for e in events if e["type"] == "tripwire"] == []
    assert not home.audit_log.exists()


@pytest.mark.netns
def test_refuses_to_train_without_a_namespace(train_home: Home, pass_file: Path,
                                              tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    """With namespaces unavailable the CLI refuses (exit 1) saying why; no run starts."""
    recipe = write_recipe(tmp_path / "r.toml")
    done = run_cli("train", str(recipe), "--home", str(train_home.root),
                   "--passphrase-file", str(pass_file),
                   env={"APPLIANCE_FORCE_NO_NETNS": "1"})
    assert done.returncode == 1
    assert "no sandbox can be created" in done.stderr
    assert "Traceback" not in done.stderr
    assert not train_home.runs_dir.exists() or not any(train_home.runs_dir.iterdir())


NAMESPACES = ("user", "mnt", "pid", "net")


def _status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return dict(line.split(":\t", 1) for line in lines if ":\t" in line)


ML_LIBRARIES = {"libtorch": "libtorch", "spacy": "/spacy/"}
"""What a process that runs the ML stack maps: libtorch, or spaCy's compiled modules."""


def inspect(pid: int, secret: Path) -> dict[str, Any] | None:
    """What the host sees of a process that maps libtorch or spaCy (None when neither)."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
        mapped = sorted(name for name, mark in ML_LIBRARIES.items() if mark in maps)
        if not mapped:
            return None
        status = _status(pid)
        return {"maps": mapped,
                "ns": {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NAMESPACES},
                "CapEff": status["CapEff"].strip(), "NoNewPrivs": status["NoNewPrivs"].strip(),
                "Seccomp": status["Seccomp"].strip(),
                "secret_visible": os.path.exists(f"/proc/{pid}/root{secret}")}
    except (OSError, KeyError):  # gone meanwhile
        return None


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            return False
    return False


class Sampler:
    """Polls /proc for descendants of one process that map libtorch or spaCy, until
    stopped."""

    def __init__(self, secret: Path) -> None:
        self.secret, self.seen = secret, {}  # type: dict[int, dict[str, Any]]
        self.root = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self.stop.is_set():
            for entry in Path("/proc").iterdir():
                pid = int(entry.name) if entry.name.isdigit() else 0
                if pid and pid not in self.seen and _descends(pid, self.root):
                    found = inspect(pid, self.secret)
                    if found is not None:
                        self.seen[pid] = found
            time.sleep(0.3)


def _sampled(train_home: Home, pass_file: Path, tmp_path: Path, repo: Path,
             *mode: str) -> tuple[dict[str, int], dict[str, Any], dict[int, dict[str, Any]]]:
    """Run tests.sandbox.cli_helper (in `mode`) while sampling /proc from the host: the exit
    code of each command, the helper's own report, and what was seen of each process that
    mapped libtorch or spaCy. Asserts that each of those is sandboxed."""
    host = {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES}
    sampler = Sampler(pass_file)
    recipe = write_recipe(tmp_path / "r.toml", steps=1, ckpt=5)
    proc = subprocess.Popen([sys.executable, "-m", "tests.sandbox.cli_helper",
                             str(train_home.root), str(pass_file), str(recipe), str(tmp_path),
                             *mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=repo)
    sampler.root = proc.pid
    sampler.thread.start()
    try:
        stdout, stderr = proc.communicate(timeout=1800)
    finally:
        sampler.stop.set()
        sampler.thread.join(5)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    codes = {line["command"]: line["code"] for line in lines if "command" in line}
    for pid, seen in sampler.seen.items():
        assert all(seen["ns"][n] != host[n] for n in NAMESPACES), (pid, seen)
        assert int(seen["CapEff"], 16) == 0 and seen["NoNewPrivs"] == "1", (pid, seen)
        assert seen["Seccomp"] == "2" and not seen["secret_visible"], (pid, seen)
    return codes, lines[-1], sampler.seen


@pytest.mark.netns
@pytest.mark.slow  # minutes on 2 busy cores: a real train, a merge and doctor
def test_ml_processes_are_sandboxed_and_the_cli_never_maps_torch(
        train_home: Home, pass_file: Path, tmp_path: Path, repo: Path) -> None:
    """Sampled from the host during train and export: each libtorch process differs from the
    host in all four namespaces, CapEff 0, NoNewPrivs 1, Seccomp 2, no passphrase path;
    the CLI process has no torch/transformers/peft/bitsandbytes/spacy module."""
    codes, report, seen = _sampled(train_home, pass_file, tmp_path, repo)
    assert codes["train"] == 0 and codes["export"] == 0 and codes["doctor"] == 0, codes
    assert report["heavy"] == [] and report["maps_libtorch"] is False
    assert len(seen) >= 2, seen  # the trainer and the merging child


@pytest.mark.netns
@pytest.mark.slow  # minutes on 2 busy cores: spaCy twice, a GGUF conversion
def test_scrubbing_and_conversion_are_sandboxed_and_the_cli_never_loads_spacy(
        train_home: Home, pass_file: Path, tmp_path: Path, repo: Path) -> None:
    """Sampled from the host during `dataset import`, `scrub eval` and `model import` (a GGUF
    conversion): each process mapping spaCy or libtorch is sandboxed as above (at least
    the two scrubbing children and the converter), and the CLI process has none of the
    ML stack's modules (spaCy, Presidio's analyzer, transformers, torch) and maps no
    libtorch."""
    codes, report, seen = _sampled(train_home, pass_file, tmp_path, repo, "data")
    assert codes == {"dataset import": 0, "scrub eval": 0, "model import": 0}, codes
    assert report["heavy"] == [] and report["maps_libtorch"] is False
    assert sum("spacy" in s["maps"] for s in seen.values()) >= 2, seen
    assert any("libtorch" in s["maps"] for s in seen.values()), seen
