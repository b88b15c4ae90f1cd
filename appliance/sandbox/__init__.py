"""The one sandbox every process that runs the ML stack starts in.

`spawn(argv, spec, env=..., pass_fds=...)` starts `argv` under bubblewrap (Debian's
`bubblewrap` package, a system prerequisite) with:

- new user, mount, PID, IPC, UTS and cgroup namespaces, every capability dropped
  (`--cap-drop ALL`), PR_SET_NO_NEW_PRIVS, and `--die-with-parent`;
- a new network namespace from a replaceable step (appliance.sandbox.network; the default
  has only its own loopback);
- the file system of appliance.sandbox.mounts (system, Python and models read-only, only
  the job's work directories writable, private /tmp, own /proc);
- the seccomp filter of appliance.sandbox.seccomp;
- an environment built by `environment()` from an allow-list (never the passphrase file's
  name, never the parent's secrets).

Secrets and records go in over inherited pipes (`pass_fds`, stdin), never as files.
`APPLIANCE_TEST_WEAKEN_SANDBOX=1` is a test-only switch, read here alone and not a product
option (like the privacy check's positive control): it falls back to the bare `unshare
--net` of old, so the hostile-code suite can show that it detects a weak sandbox.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import netns, offline
from appliance.errors import ApplianceError, IsolationError
from appliance.resources import REPO_ROOT
from appliance.sandbox import mounts, seccomp
from appliance.sandbox.network import LOOPBACK_ONLY, NetworkStep

WEAKEN_ENV = "APPLIANCE_TEST_WEAKEN_SANDBOX"
FORCE_UNAVAILABLE_ENV = "APPLIANCE_FORCE_NO_NETNS"
FULL = "bubblewrap: user, mount, PID, network namespaces; no capabilities; no_new_privs; seccomp"
KEPT_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "APPLIANCE_DEBUG", "PYTHONHASHSEED")
KEPT_PREFIXES = ("LC_", "CUDA_", "NVIDIA_", "OMP_", "MKL_", "OPENBLAS_", "PYTORCH_")
NAMESPACES = ("--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
              "--unshare-cgroup-try")


@dataclass(frozen=True)
class Spec:
    """What one sandboxed program may see: read-only and writable host paths, the paths
    that must stay invisible (the passphrase file), its working directory and network."""

    read_only: tuple[Path, ...] = ()
    writable: tuple[Path, ...] = ()
    secrets: tuple[Path, ...] = ()
    workdir: Path | None = None
    network: NetworkStep = field(default=LOOPBACK_ONLY)
    gpu: bool = True
    """Whether the host's GPU device nodes are bound in (appliance.sandbox.mounts)."""


@dataclass(frozen=True)
class Level:
    """The isolation in force: whether it is the full sandbox, and one line saying what."""

    available: bool
    full: bool
    detail: str


def weakened() -> bool:
    """Whether the test-only weakening switch is set."""
    return os.environ.get(WEAKEN_ENV) == "1"


def _bwrap() -> str | None:
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def _probe_full() -> Level:
    binary = _bwrap()
    if binary is None:
        return Level(False, False, "bubblewrap is not installed (apt-get install bubblewrap)")
    try:
        argv = command([sys.executable, "-c", netns.PROBE], Spec())
        with _filter_fd() as fd:
            done = subprocess.run(argv(fd), capture_output=True, text=True, timeout=60,
                                  check=False, pass_fds=(fd,), env=environment({}))
    except (OSError, subprocess.TimeoutExpired, ApplianceError) as exc:
        return Level(False, False, f"bubblewrap does not start: {exc}")
    if done.returncode != 0 or done.stdout.strip() != '["lo"]':
        why = (done.stderr.strip().splitlines() or [done.stdout.strip()])[-1][:300]
        return Level(False, False, f"bubblewrap cannot make the sandbox: {why} (user "
                     "namespaces may be disabled: sysctl user.max_user_namespaces)")
    return Level(True, True, FULL)


def probe() -> Level:
    """The isolation level available here (cached; the switches are read each time)."""
    if os.environ.get(FORCE_UNAVAILABLE_ENV):
        return Level(False, False, f"sandbox disabled by {FORCE_UNAVAILABLE_ENV}")
    if weakened():
        support = netns.probe()
        return Level(support.available, False,
                     f"WEAKENED for a test ({WEAKEN_ENV}): {support.detail}")
    return _probe_full()


def require() -> Level:
    """The level in force, or IsolationError saying why no sandbox can be made."""
    level = probe()
    if not level.available:
        raise IsolationError(f"no sandbox can be created: {level.detail}",
                             where="training isolation",
                             hint="the policy refuses to run the ML stack without one "
                                  "(network.when_isolation_unavailable = \"refuse\"); "
                                  "appliance doctor shows the checks")
    return level


class _filter_fd:  # noqa: N801 - used as a context manager, like open()
    """The compiled seccomp program in a memory file, closed on exit."""

    def __enter__(self) -> int:
        self.fd = seccomp.memfd()
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def command(argv: Sequence[str], spec: Spec) -> Callable[[int], list[str]]:
    """A function of the seccomp file descriptor giving the full command line (the secret
    check runs here, before anything starts)."""
    visible = mounts.bound(spec.read_only, spec.writable)
    mounts.refuse_visible_secrets(spec.secrets, visible)
    options = [*NAMESPACES, *spec.network.bwrap_args(), "--cap-drop", "ALL",
               "--die-with-parent",
               *mounts.bwrap_args(spec.read_only, spec.writable, spec.workdir,
                                  gpu=spec.gpu)]

    def full(fd: int) -> list[str]:
        bwrap = _bwrap() or "bwrap"
        return spec.network.outer([bwrap, *options, "--seccomp", str(fd), "--", *argv])

    return full


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """The sandboxed program's environment: an allow-list of ours (locale, paths, GPU and
    thread settings, --debug), the offline switches, a private HOME and TMPDIR, our sources
    on PYTHONPATH, then `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k in KEPT_ENV or k.startswith(KEPT_PREFIXES)}
    offline.apply(env)
    env.update({"HOME": "/tmp", "TMPDIR": "/tmp", "PYTHONUNBUFFERED": "1",  # noqa: S108
                "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(REPO_ROOT)})
    env.update(extra)
    return env


def spawn(argv: Sequence[str], spec: Spec, *, env: Mapping[str, str],
          pass_fds: Iterable[int] = (), **popen: Any) -> subprocess.Popen[bytes]:
    """Start `argv` in the sandbox (IsolationError when none can be made). `env` comes
    from `environment()`; `popen` goes to subprocess.Popen (stdin, stdout, ...)."""
    level = require()
    if not level.full:  # the test-only weakening: today's bare network namespace
        weak = netns.isolated_argv(list(argv)) or list(argv)
        return subprocess.Popen(weak, env={**os.environ, **env}, pass_fds=tuple(pass_fds),
                                close_fds=True, **popen)
    build = command(argv, spec)
    with _filter_fd() as fd:
        return subprocess.Popen(build(fd), env=dict(env), pass_fds=(*pass_fds, fd),
                                close_fds=True, **popen)


def python(module: str, *args: str) -> list[str]:
    """`python -m module args` with this interpreter, for `spawn`."""
    return [sys.executable, "-m", module, *args]


def host_pid(outer: int, inner: int) -> int | None:
    """The host PID of the process that is `inner` in the PID namespace of the sandbox
    started as `outer` (to signal it: bubblewrap does not forward signals)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        nspid = next((ln.split()[1:] for ln in status.splitlines()
                      if ln.startswith("NSpid:")), [])
        if len(nspid) >= 2 and nspid[-1] == str(inner) and _descends(int(entry.name), outer):
            return int(entry.name)
    return None


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False
