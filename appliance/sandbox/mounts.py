"""The sandbox's view of the file system, as bubblewrap options.

Read-only: the system (/usr and the merged-/usr links, a short list of /etc files the
dynamic loader, Python and the C library read, /sys), the Python installation and the
virtualenv, the appliance's own package, and the paths a job names read-only (model
weights, an artifact). Writable: only the job's work directories. Fresh, private: /tmp and
/dev/shm (tmpfs), /dev (bubblewrap's minimal one, plus GPU device nodes when present),
/proc (the sandbox's PID namespace only, plus the NVIDIA driver's /proc/driver/nvidia
read-only when NVIDIA nodes are present); a job that uses no GPU (scrubbing) gets none.
Nothing else of the host exists inside; in particular no host UNIX socket (/run, /tmp,
/var/run) and no file of the home but those named. A path the caller names as secret must
not lie under anything bound, else the sandbox refuses to start.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import appliance
from appliance.errors import IsolationError

MERGED_USR = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/passwd",
             "/etc/group", "/etc/nsswitch.conf", "/etc/hosts", "/etc/localtime",
             "/etc/alternatives", "/etc/os-release", "/etc/mime.types")
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")
NVIDIA_PROC = "/proc/driver/nvidia"
PRIVATE_TMPFS = ("/tmp", "/dev/shm")  # noqa: S108 - fresh, private mounts inside


def runtime_paths() -> list[Path]:
    """The Python installation, the virtualenv and the appliance's package, read-only."""
    package = Path(appliance.__file__).resolve().parent
    paths = {Path(sys.base_prefix), Path(sys.prefix), package,
             Path(sys.executable).resolve().parent}
    return sorted(p for p in paths if not _under(p, [Path("/usr")]))


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)


def _system() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for link in MERGED_USR:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    return [*args, "--ro-bind-try", "/sys", "/sys"]


def gpu_nodes() -> list[str]:
    """The GPU device nodes present on the host (NVIDIA, DRM render nodes, AMD KFD)."""
    return sorted({node for pattern in GPU_DEVICES for node in glob.glob(pattern)})


def _devices(gpu: bool) -> list[str]:
    """Own /proc and a minimal /dev; with `gpu`, the host's GPU device nodes (the same
    nodes, so CUDA's ioctls reach the driver) and the NVIDIA driver's /proc entries
    (read-only: CUDA reads its version and device parameters there)."""
    args = ["--proc", "/proc", "--dev", "/dev"]
    if not gpu:
        return args
    nodes = gpu_nodes()
    for node in nodes:
        args += ["--dev-bind-try", node, node]
    if any(Path(node).name.startswith("nvidia") for node in nodes) \
            and os.path.isdir(NVIDIA_PROC):
        args += ["--ro-bind-try", NVIDIA_PROC, NVIDIA_PROC]
    return args


def bound(read_only: Iterable[Path], writable: Iterable[Path]) -> list[Path]:
    """Every host path the sandbox sees (for the secret check)."""
    system = [Path("/usr"), Path("/sys"), *(Path(p) for p in ETC_FILES)]
    return [*system, *runtime_paths(), *read_only, *writable]


def refuse_visible_secrets(secrets: Iterable[Path], visible: list[Path]) -> None:
    """IsolationError when a secret lies under a path the sandbox would see."""
    for secret in secrets:
        for candidate in {secret.absolute(), secret.resolve()}:
            if _under(candidate, visible):
                raise IsolationError(f"a secret would be visible inside the sandbox: "
                                     f"{secret}", where="sandbox mounts",
                                     hint="keep the passphrase file outside the home, the "
                                          "model store and the installation")


def bwrap_args(read_only: Iterable[Path], writable: Iterable[Path],
               workdir: Path | None, *, gpu: bool = True) -> list[str]:
    """The mount options, in the order bubblewrap applies them (later over earlier); `gpu`
    False leaves the GPU out (a job that never uses one)."""
    args = _system() + _devices(gpu)
    for tmp in PRIVATE_TMPFS:
        args += ["--tmpfs", tmp]
    for path in runtime_paths():
        args += ["--ro-bind", str(path), str(path)]
    for path in read_only:
        args += ["--ro-bind", str(path.absolute()), str(path.absolute())]
    for path in writable:
        args += ["--bind", str(path.absolute()), str(path.absolute())]
    return [*args, "--chdir", str(workdir.absolute() if workdir else "/tmp")]  # noqa: S108
