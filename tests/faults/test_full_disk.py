"""A real full disk: the home on a small tmpfs mounted in a private mount namespace
(`unshare --mount`, root only), filled until only a few KiB are left. Each write that runs
out of space is one `no space left on ...` line, exit 1, nothing half-written, and audited
once the writer's temp files are gone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.conftest import PASSPHRASE, REPO, write_fast_policy

CHILD = r'''
import contextlib, io, json, os, sys
from pathlib import Path

from appliance import trust
from appliance import audit
from appliance.cli.main import main
from appliance.home import Home
from appliance.service.home import init_home

mnt, data, pass_file, model, policy = (Path(p) for p in sys.argv[1:6])
filler = mnt / "filler"


def fill(leave):
    """Grow the filler until the disk is full, then give back `leave` bytes."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:
        pass
    try:
        while True:
            os.write(fd, b"\0" * 512)
    except OSError:
        pass
    os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    os.close(fd)


def run(*args):
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return {"code": code, "err": err.getvalue()}


def tail(home):
    lines = home.audit_log.read_bytes().splitlines()
    return [json.loads(line) for line in lines[-2:]]


home = Home(mnt / "home")
init_home(home, pass_file.read_bytes().strip(), policy)
trust.forget(home)
h = ("--home", str(home.root))
out = {}
fill(16 * 1024)
out["vault"] = run(*h, "dataset", "import", str(data), "--name", "big",
                   "--passphrase-file", str(pass_file))
out["vault_files"] = sorted(p.name for p in home.vault_dir.iterdir())
out["vault_tail"] = tail(home)
out["vault_verify"] = run(*h, "audit", "verify")["code"]
fill(16 * 1024)
out["free_before_model"] = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
out["model"] = run(*h, "model", "import", str(model), "--name", "m")
out["model_files"] = sorted(p.name for p in home.models_dir.iterdir())
out["model_tail"] = tail(home)
fill(0)
for _ in range(64):  # lines land in the log's last page until it is full too
    out["audit"] = run(*h, "dataset", "list")
    if out["audit"]["code"]:
        break
out["audit_log_ends_cleanly"] = home.audit_log.read_bytes().endswith(b"\n")
os.unlink(filler)
out["audit_verify"] = run(*h, "audit", "verify")["code"]
print(json.dumps(out))
'''


def _dataset(path: Path) -> Path:
    """About 40 KiB of distinct chat records (more than the 16 KiB left)."""
    with path.open("w") as handle:
        for i in range(60):
            text = f"Record {i}: the quarterly report lists {i * 7} widgets shipped " * 6
            handle.write(json.dumps({"messages": [{"role": "user", "content": text},
                                                  {"role": "assistant",
                                                   "content": f"Noted, item {i}."}]}) + "\n")
    return path


def _model(root: Path) -> Path:
    """A safetensors model directory of about 256 KiB."""
    import struct

    root.mkdir()
    (root / "config.json").write_text('{"model_type": "llama"}')
    n = 65536
    header = json.dumps({"w": {"dtype": "F32", "shape": [n],
                               "data_offsets": [0, 4 * n]}}).encode()
    (root / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header
                                             + b"\1" * (4 * n))
    return root


@pytest.fixture(scope="module")
def full_disk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Run CHILD once on a 4 MiB tmpfs in a private mount namespace."""
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare(1) to mount a private tmpfs")
    root = tmp_path_factory.mktemp("full-disk")
    mnt = root / "mnt"
    mnt.mkdir()
    pass_file = root / "pass"
    pass_file.write_bytes(PASSPHRASE + b"\n")
    pass_file.chmod(0o600)
    script = root / "child.py"
    script.write_text(CHILD)
    args = [str(mnt), str(_dataset(root / "data.jsonl")), str(pass_file),
            str(_model(root / "model")), str(write_fast_policy(root / "policy.toml"))]
    shell = 'mount -t tmpfs -o size=4m,mode=0700 tmpfs "$1" && shift && exec "$@"'
    done = subprocess.run([unshare, "--mount", "--propagation", "private", "sh", "-c", shell,
                           "sh", str(mnt), sys.executable, str(script), *args],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    if done.returncode != 0 and "mount" in done.stderr and "ermission" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _single_line(run: object, *needles: str) -> None:
    assert isinstance(run, dict)
    lines = [line for line in run["err"].splitlines() if line.strip()]
    assert run["code"] == 1 and len(lines) == 1, run
    assert lines[0].startswith("appliance: no space left on "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_a_full_disk_during_a_vault_write(full_disk: dict[str, object]):
    """Importing a dataset larger than the space left: one line naming the vault, exit 1, no
    temp file left, the failure audited and the log intact (the finding: internal error:
    OSError, not audited)."""
    _single_line(full_disk["vault"], "the vault")
    assert full_disk["vault_files"] == [".lock"]
    last = full_disk["vault_tail"]
    assert isinstance(last, list)
    failed = [e for e in last if e["action"] == "dataset.write"]
    assert failed and failed[0]["outcome"] == "failed" and failed[0]["error"] == "NoSpaceError"
    assert full_disk["vault_verify"] == 0


def test_a_full_disk_during_a_model_import(full_disk: dict[str, object]):
    """A model copy that runs out of space: one line naming the model store, no staging
    directory left, the refusal audited."""
    assert full_disk["model"]["code"] == 1, {  # type: ignore[index]
        k: full_disk[k] for k in ("free_before_model", "model_files", "model")}
    _single_line(full_disk["model"], "the model store")
    assert full_disk["model_files"] == []
    last = full_disk["model_tail"]
    assert isinstance(last, list)
    assert last[-1]["action"] == "model.import" and last[-1]["error"] == "NoSpaceError"


def test_a_completely_full_disk_during_an_audit_append(full_disk: dict[str, object]):
    """With no byte left even the audit line cannot be written: one line, exit 1, and the
    log still verifies once space is freed."""
    _single_line(full_disk["audit"], "the audit log")
    assert full_disk["audit_log_ends_cleanly"] and full_disk["audit_verify"] == 0
