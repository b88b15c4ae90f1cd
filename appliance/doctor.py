"""Readiness checks of this machine for the appliance.

Each check is required (doctor fails without it) or advisory (reported, never fatal). The
heavy probe (torch, bitsandbytes) runs in the sandbox (appliance.sandbox), like every job
of the ML stack, so doctor itself never imports it; the `sandbox` check says which level of
isolation is in force, and training refuses without the full one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from appliance import netns, resources, sandbox, trust
from appliance.errors import ApplianceError
from appliance.home import Home
from appliance.policy import Policy

MIN_FREE_GIB = 2.0
ADVISED_FREE_GIB = 10.0
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "", "HF_HUB_DISABLE_TELEMETRY": "1",
               "DO_NOT_TRACK": "1"}


@dataclass(frozen=True)
class Check:
    """One readiness check."""

    name: str
    required: bool
    ok: bool
    detail: str


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions(lock: Path) -> dict[str, str]:
    """name -> pinned version for every `name==version` line of a lock file."""
    pins: dict[str, str] = {}
    for line in lock.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[_canon(match.group(1))] = match.group(2)
    return pins


def check_python() -> Check:
    """Python 3.11 or newer."""
    version = ".".join(map(str, sys.version_info[:3]))
    return Check("python", True, sys.version_info >= (3, 11), f"Python {version}")


def check_dependencies() -> Check:
    """Installed distributions match the hash-pinned lock."""
    lock = resources.lock_file()
    if lock is None:
        return Check("dependencies", True, False, "vendor_wheels/requirements.lock not found")
    pins = locked_versions(lock)
    wrong = []
    for name, want in sorted(pins.items()):
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if have != want:
            wrong.append(f"{name} {have} (lock: {want})")
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        again = "scripts/install.sh --cuda" if "cuda" in lock.name else "scripts/install.sh"
        return Check("dependencies", True, False, f"not as locked in {lock.name}: {shown} "
                     f"(run {again})")
    return Check("dependencies", True, True, f"{len(pins)} packages match the lock "
                 f"({lock.name})")


def check_namespace() -> Check:
    """A network namespace can be created: training refuses without one."""
    support = netns.probe()
    detail = support.detail if support.available else \
        f"cannot create a network namespace, so training will refuse: {support.detail}"
    return Check("network-namespace", True, support.available, detail)


def check_sandbox() -> Check:
    """The full sandbox (bubblewrap, seccomp) can be made: the ML stack refuses without."""
    level = sandbox.probe()
    ok = level.available and level.full
    detail = level.detail if ok else f"the ML stack will refuse to run: {level.detail}"
    return Check("sandbox", True, ok, detail)


def _routes() -> list[str]:
    routes = []
    try:
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] != "lo":
                routes.append(f"{fields[0]} (ipv4)")
    except OSError:
        pass
    try:
        for line in Path("/proc/net/ipv6_route").read_text().splitlines():
            fields = line.split()
            if fields and fields[-1] != "lo":
                routes.append(f"{fields[-1]} (ipv6)")
    except OSError:
        pass
    return sorted(set(routes))


def check_routes() -> Check:
    """Whether this machine has any network route beyond loopback (air-gap advisory)."""
    routes = _routes()
    if routes:
        return Check("network-routes", False, False, "this machine has network routes via "
                     f"{', '.join(routes)}: it is not air-gapped (training is still isolated)")
    return Check("network-routes", False, True, "no route beyond loopback: air-gapped")


_ACCEL_PROBE = """
import json, os
import torch, bitsandbytes as bnb
from bitsandbytes import cextension
cuda = torch.cuda.is_available()
print(json.dumps({"torch": torch.__version__, "bnb": bnb.__version__,
  "build": f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU",
  "backend": str(cextension.BNB_BACKEND), "cuda": cuda,
  "gpu": torch.cuda.get_device_name(0) if cuda else None,
  "cpu": torch.backends.cpu.get_cpu_capability(), "cores": os.cpu_count()}))
"""


def check_accelerator() -> Check:
    """CPU/GPU and the bitsandbytes backend, probed in the sandbox."""
    try:
        proc = sandbox.spawn([sys.executable, "-c", _ACCEL_PROBE], sandbox.Spec(),
                             env=sandbox.environment({}), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        out, _ = proc.communicate(timeout=180)
        info = json.loads(out.decode().strip().splitlines()[-1])
    except ApplianceError as exc:
        return Check("accelerator", True, False, f"not probed: {exc.line()}")
    except (OSError, subprocess.TimeoutExpired, json.JSONDecodeError, IndexError):
        return Check("accelerator", True, False,
                     "torch and bitsandbytes do not import (run scripts/install.sh)")
    device = f"CUDA GPU {info['gpu']} usable" if info["cuda"] else \
        f"CPU only ({info['cores']} cores, {info['cpu']})"
    if not info["cuda"] and info.get("build", "CPU") != "CPU":
        device += ": no usable GPU for this CUDA build"
    return Check("accelerator", True, True, f"{device}; torch {info['torch']} "
                 f"({info.get('build', '?')} build), bitsandbytes {info['bnb']} backend "
                 f"{info['backend']}")


def check_disk(home: Home) -> Check:
    """Free disk space where the home lives."""
    probe = home.root
    while not probe.exists():
        probe = probe.parent
    free_gib = shutil.disk_usage(probe).free / 2**30
    ok = free_gib >= MIN_FREE_GIB
    note = "" if free_gib >= ADVISED_FREE_GIB else f" (under {ADVISED_FREE_GIB:g} GiB advised)"
    return Check("disk", True, ok, f"{free_gib:.1f} GiB free at {probe}{note}")


def check_tmpfs(policy: Policy) -> Check:
    """The memory-backed scratch directory exists and is writable."""
    path = Path(policy.storage.tmpfs_dir)
    ok = path.is_dir() and os.access(path, os.W_OK)
    return Check("tmpfs", True, ok, f"{path} {'is writable' if ok else 'is not writable'}")


def check_pii_model(policy: Policy) -> Check:
    """The NER model is installed and matches the digest pinned in the policy."""
    from appliance.scrub.offline import locate_model

    model = policy.pii.ner_model
    where = locate_model(model)
    if where.path is None:
        return Check("pii-model", model.required, False,
                     f"{model.name}: {where.problem}: names and places would not be detected")
    if where.problem is not None:
        return Check("pii-model", True, False, f"{model.name} {where.problem}")
    return Check("pii-model", model.required, True, f"{model.name} {where.digest}")


def check_home(home: Home) -> Check:
    """Whether the home is initialised (advisory: init creates it); an initialised home must
    pass the trust checks every command makes (permissions, keys, active policy): required."""
    from appliance.errors import ApplianceError

    if home.is_initialised():
        try:
            trust.require_home(home)
        except ApplianceError as exc:
            return Check("home", True, False, exc.line())
        return Check("home", False, True, f"{home.root} is initialised")
    return Check("home", False, False, f"{home.root} is not initialised (run appliance init)")


def check_cluster(policy: Policy) -> Check:
    """nftables and iproute2 for a cluster run's filtered interface; required only when the
    policy allows more than one machine."""
    import shutil

    required = policy.training.limits.max_nodes > 1
    missing = [pkg for tool, pkg in (("nft", "nftables"), ("ip", "iproute2"))
               if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin")
               is None]
    if missing:
        return Check("cluster-network", required, False,
                     f"missing {', '.join(missing)} (apt-get install {' '.join(missing)}): "
                     "training over several machines will refuse")
    return Check("cluster-network", required, True,
                 f"nft and ip present; policy allows {policy.training.limits.max_nodes} "
                 f"machine(s), {len(policy.network.cluster.nodes)} node address(es) listed")


def active_policy(home: Home) -> tuple[Policy, str]:
    """The home's active policy when initialised, else the shipped default."""
    from appliance.policy import load_policy

    path = home.policy_file if home.is_initialised() else resources.shipped_policy("default")
    return load_policy(path), str(path)


def run_checks(home: Home) -> list[Check]:
    """Every readiness check, in the order an operator reads them."""
    checks = [check_python(), check_dependencies()]
    try:
        policy, source = active_policy(home)
        checks.append(Check("policy", True, True, f"{policy.meta.name} from {source}"))
    except ApplianceError as exc:
        return [*checks, Check("policy", True, False, exc.line())]
    steps: list[Callable[[], Check]] = [
        check_namespace, check_sandbox, check_routes, check_accelerator, lambda: check_disk(home),
        lambda: check_tmpfs(policy), lambda: check_pii_model(policy), lambda: check_home(home),
        lambda: check_cluster(policy),
    ]
    return checks + [step() for step in steps]


def as_dict(checks: list[Check]) -> dict[str, object]:
    """The `--json` document."""
    return {"ok": all(c.ok for c in checks if c.required), "checks": [asdict(c) for c in checks]}
