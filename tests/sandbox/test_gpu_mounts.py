"""GPU device nodes in the sandbox. This machine has no GPU, so the nodes are stand-ins: a
character device made with mknod (the null device's numbers) where the NVIDIA patterns
look (under /var/tmp: the sandbox's private /tmp would hide one under /tmp), and the host's
/proc/driver in place of /proc/driver/nvidia. The argument
construction is checked as bubblewrap gets it, and the real sandbox is started with it: the
node is usable inside (the same device, opened for writing), the driver's /proc entries are
read-only, and a job that asks for no GPU sees neither. Untested on GPU hardware."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance import sandbox
from appliance.sandbox import mounts

INSIDE = r"""
import json, os, stat, sys
node, proc = sys.argv[1], sys.argv[2]
out = {"node": os.path.exists(node) and stat.S_ISCHR(os.stat(node).st_mode)}
try:
    with open(node, "wb") as f:
        f.write(b"x")
    out["node_write"] = "ok"
except OSError as exc:
    out["node_write"] = type(exc).__name__
with open("/proc/self/mountinfo") as f:
    mounts = [line.split() for line in f]
out["proc_mount"] = next((m[5].split(",")[0] for m in mounts if m[4] == proc), None)
print(json.dumps(out))
"""


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A character device named like an NVIDIA node, found by the sandbox's GPU patterns."""
    where = Path(tempfile.mkdtemp(prefix="appliance-gpu-", dir="/var/tmp"))
    node = where / "nvidia0"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        shutil.rmtree(where)
        pytest.skip(f"cannot make a device node here: {exc}")
    monkeypatch.setattr(mounts, "GPU_DEVICES", (str(where / "nvidia*"), str(where / "kfd")))
    monkeypatch.setattr(mounts, "NVIDIA_PROC", "/proc/driver")
    yield node
    shutil.rmtree(where)


def _after(args: list[str], anchor: list[str], wanted: list[str]) -> bool:
    """Whether `wanted` appears in `args`, as consecutive items, after `anchor`."""
    def at(seq: list[str]) -> int:
        return next((i for i in range(len(args)) if args[i:i + len(seq)] == seq), -1)

    return at(anchor) >= 0 and at(wanted) > at(anchor)


def test_gpu_nodes_and_driver_entries_are_bound_after_dev_and_proc(fake_gpu: Path) -> None:
    """The node is bound (device access kept) after bubblewrap's own /dev, the driver's
    /proc entries read-only after the sandbox's own /proc; none of it without `gpu`."""
    args = mounts.bwrap_args((), (), None)
    node = str(fake_gpu)
    assert _after(args, ["--dev", "/dev"], ["--dev-bind-try", node, node])
    assert _after(args, ["--proc", "/proc"], ["--ro-bind-try", "/proc/driver", "/proc/driver"])
    bare = mounts.bwrap_args((), (), None, gpu=False)
    assert node not in bare and "/proc/driver" not in bare
    assert mounts.gpu_nodes() == [node]  # one entry per node, patterns overlapping or not


def test_no_gpu_no_device_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NVIDIA nodes, neither device binds nor the driver's /proc entries."""
    monkeypatch.setattr(mounts, "GPU_DEVICES", (str(tmp_path / "nvidia*"),))
    monkeypatch.setattr(mounts, "NVIDIA_PROC", "/proc/driver")
    args = mounts.bwrap_args((), (), None)
    assert "--dev-bind-try" not in args and "/proc/driver" not in args


def _run_inside(node: Path, *, gpu: bool) -> dict[str, object]:
    proc = sandbox.spawn([sys.executable, "-c", INSIDE, str(node), "/proc/driver"],
                         sandbox.Spec(gpu=gpu), env=sandbox.environment({}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    return dict(json.loads(out))


@pytest.mark.netns
def test_the_real_sandbox_uses_the_node_and_keeps_driver_entries_read_only(
        fake_gpu: Path) -> None:
    """Inside the real sandbox the bound node is a usable character device (nodev is not
    set on it) and the driver's /proc entries are a read-only mount; without `gpu`,
    neither."""
    seen = _run_inside(fake_gpu, gpu=True)
    assert seen["node"] is True and seen["node_write"] == "ok", seen
    assert seen["proc_mount"] == "ro", seen
    bare = _run_inside(fake_gpu, gpu=False)
    assert bare["node"] is False and bare["proc_mount"] is None, bare
