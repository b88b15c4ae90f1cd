"""The offline install: hash-pinned lock, vendored wheels, no network."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "vendor_wheels" / "requirements.lock"
NETNS = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "--net", "true"], check=False, capture_output=True).returncode == 0


def _requirements(text: str) -> list[str]:
    """Logical requirement lines (continuations joined, comments dropped)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def test_lock_pins_every_line_with_eq_and_hash():
    """Every requirement in the lock is pinned with == and carries a sha256 hash."""
    lines = _requirements(LOCK.read_text())
    assert len(lines) > 50
    for line in lines:
        assert re.match(r"^[A-Za-z0-9._-]+==\S+ ", line), line
        assert "--hash=sha256:" in line, line


def test_lock_takes_the_cpu_build_of_torch():
    """torch is the CPU build and no CUDA package is locked."""
    lines = _requirements(LOCK.read_text())
    names = {line.split("==")[0].lower(): line.split("==")[1].split()[0] for line in lines}
    assert names["torch"] == "2.13.0+cpu"
    assert not [n for n in names if n.startswith(("nvidia", "triton", "cuda"))]


def _tiny_wheel(dest: Path, name: str = "airgap_probe", version: str = "1.0") -> Path:
    """Write a minimal valid pure-Python wheel."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"VALUE = 42\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = dest / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return wheel


def _install(tmp_path: Path, lock_text: str, wheels: Path) -> subprocess.CompletedProcess[str]:
    lock = tmp_path / "test.lock"
    lock.write_text(lock_text)
    env = {**os.environ, "APPLIANCE_VENV": str(tmp_path / "venv"), "APPLIANCE_LOCK": str(lock),
           "APPLIANCE_WHEELS": str(wheels), "APPLIANCE_INSTALL_SELF": "0"}
    return subprocess.run(["unshare", "--net", str(REPO / "scripts" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def wheelhouse(tmp_path: Path) -> tuple[Path, str]:
    """A wheel directory with one tiny wheel, and its sha256."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = _tiny_wheel(wheels)
    return wheels, hashlib.sha256(wheel.read_bytes()).hexdigest()


pytestmark_netns = pytest.mark.skipif(not NETNS, reason="unshare --net is not available")


@pytestmark_netns
@pytest.mark.netns
def test_offline_install_of_a_hashed_wheel_succeeds(tmp_path, wheelhouse):
    """install.sh installs a correctly hashed wheel with no network at all."""
    wheels, sha = wheelhouse
    done = _install(tmp_path, f"airgap-probe==1.0 --hash=sha256:{sha}\n", wheels)
    assert done.returncode == 0, done.stderr
    assert "offline install" in done.stdout
    check = subprocess.run([str(tmp_path / "venv/bin/python"), "-c",
                            "import airgap_probe; print(airgap_probe.VALUE)"],
                           capture_output=True, text=True, check=False)
    assert check.stdout.strip() == "42"


@pytestmark_netns
@pytest.mark.netns
def test_tampered_wheel_fails_the_install(tmp_path, wheelhouse):
    """A wheel whose bytes differ from the locked hash is refused."""
    wheels, sha = wheelhouse
    wheel = next(wheels.glob("*.whl"))
    with wheel.open("ab") as handle:
        handle.write(b"\0")
    done = _install(tmp_path, f"airgap-probe==1.0 --hash=sha256:{sha}\n", wheels)
    assert done.returncode != 0
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in done.stderr
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/airgap_probe"))


@pytestmark_netns
@pytest.mark.netns
def test_line_without_hash_fails_the_install(tmp_path, wheelhouse):
    """A lock line with no hash is refused in hash-checking mode."""
    wheels, _ = wheelhouse
    done = _install(tmp_path, "airgap-probe==1.0\n", wheels)
    assert done.returncode != 0
    assert "Hashes are required" in done.stderr


@pytestmark_netns
@pytest.mark.netns
def test_line_not_pinned_with_eq_fails_the_install(tmp_path, wheelhouse):
    """A lock line pinned with >= instead of == is refused."""
    wheels, sha = wheelhouse
    done = _install(tmp_path, f"airgap-probe>=1.0 --hash=sha256:{sha}\n", wheels)
    assert done.returncode != 0
    assert "pinned with ==" in done.stderr


def _vendored() -> bool:
    wheels = {p.name.split("-")[0].lower().replace("_", "-") for p in
              (REPO / "vendor_wheels").glob("*.whl")}
    return len(wheels) >= len(_requirements(LOCK.read_text()))


@pytestmark_netns
@pytest.mark.netns
def test_air_gapped_install_from_vendored_wheels_then_doctor(tmp_path):
    """vendor -> install into a fresh venv inside an empty network namespace -> doctor passes."""
    if not _vendored():
        if os.environ.get("CI"):
            pytest.fail("vendor_wheels/ is not filled: .ci/run must run scripts/vendor.sh first")
        pytest.skip("vendor_wheels/ holds no complete wheelhouse (run scripts/vendor.sh)")
    venv = tmp_path / "venv"
    env = {**os.environ, "APPLIANCE_VENV": str(venv)}
    done = subprocess.run(["unshare", "--net", str(REPO / "scripts" / "install.sh")], env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "offline install" in done.stdout
    doctor = subprocess.run(["unshare", "--net", str(venv / "bin" / "appliance"), "doctor",
                             "--json", "--home", str(tmp_path / "home")], capture_output=True,
                            text=True, timeout=300, check=False)
    report = json.loads(doctor.stdout.strip().splitlines()[-1])
    assert doctor.returncode == 0, report
    assert report["ok"] is True
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["dependencies"]["ok"] and checks["network-routes"]["ok"]


CUDA_LOCK = REPO / "vendor_wheels" / "requirements-cuda.lock"
CUDA_WHEELS = REPO / "vendor_wheels" / "cuda"


def _pins(path: Path) -> dict[str, str]:
    return {line.split("==")[0].lower(): line.split("==")[1].split()[0]
            for line in _requirements(path.read_text())}


def test_cuda_lock_is_hashed_takes_cuda_torch_and_follows_the_cpu_lock():
    """The GPU lock pins every line with == and a hash, takes torch's CUDA build with its
    nvidia-* libraries, and pins every package the CPU lock also has to the same version."""
    for line in _requirements(CUDA_LOCK.read_text()):
        assert re.match(r"^[A-Za-z0-9._-]+==\S+ ", line) and "--hash=sha256:" in line, line
    cpu, cuda = _pins(LOCK), _pins(CUDA_LOCK)
    assert cuda["torch"] == cpu["torch"].removesuffix("+cpu") and "triton" in cuda
    assert {"nvidia-cublas", "nvidia-cudnn-cu13", "nvidia-nccl-cu13"} <= set(cuda)
    assert {k: v for k, v in cuda.items() if k in cpu and k != "torch"} == \
        {k: v for k, v in cpu.items() if k != "torch"}


@pytest.mark.slow
@pytestmark_netns
@pytest.mark.netns
def test_cuda_lock_installs_offline_and_imports_without_a_gpu(tmp_path):
    """scripts/install.sh --cuda from vendor_wheels/cuda/ (scripts/vendor.sh --cuda, several
    GB) into a fresh venv inside an empty network namespace; the CUDA build of torch imports
    on a machine without a GPU; doctor checks the installation against the GPU lock, names
    the build and says whether a GPU is usable. Skips when the wheels are not vendored
    (README, "Installing on a GPU machine")."""
    if len(list(CUDA_WHEELS.glob("*.whl"))) < len(_requirements(CUDA_LOCK.read_text())):
        pytest.skip("vendor_wheels/cuda/ is not filled (run scripts/vendor.sh --cuda)")
    venv = tmp_path / "venv"
    env = {**os.environ, "APPLIANCE_VENV": str(venv)}
    done = subprocess.run(["unshare", "--net", str(REPO / "scripts" / "install.sh"), "--cuda"],
                          env=env, capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "offline install" in done.stdout
    probe = subprocess.run(["unshare", "--net", str(venv / "bin" / "python"), "-c",
                            "import torch, bitsandbytes; print(torch.__version__, "
                            "torch.version.cuda, torch.cuda.is_available())"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert probe.returncode == 0, probe.stderr
    version, cuda, usable = probe.stdout.split()[-3:]
    assert version == _pins(CUDA_LOCK)["torch"] + "+cu" + cuda.replace(".", "")
    doctor = subprocess.run(["unshare", "--net", str(venv / "bin" / "appliance"), "doctor",
                             "--json", "--home", str(tmp_path / "home")], capture_output=True,
                            text=True, timeout=300, check=False)
    checks = {c["name"]: c for c in json.loads(doctor.stdout.strip().splitlines()[-1])["checks"]}
    assert checks["dependencies"]["ok"], checks["dependencies"]
    assert "requirements-cuda.lock" in checks["dependencies"]["detail"]
    accelerator = checks["accelerator"]["detail"]
    assert f"CUDA {cuda} build" in accelerator
    if usable == "False":
        assert "no usable GPU for this CUDA build" in accelerator
    else:
        assert "usable" in accelerator and "no usable GPU" not in accelerator


def test_the_installation_is_checked_against_the_lock_it_came_from(monkeypatch):
    """doctor and provenance use the lock whose torch pin is the installed torch: this CPU
    environment's is the CPU lock; with torch's CUDA build installed, the GPU lock (the real
    CUDA environment: test_cuda_lock_installs_offline_and_imports_without_a_gpu)."""
    from importlib import metadata

    from appliance import resources

    assert resources.lock_file() == LOCK
    real = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: _pins(CUDA_LOCK)["torch"]
                        if name == "torch" else real(name))
    assert resources.lock_file() == CUDA_LOCK
    monkeypatch.setattr(metadata, "version", lambda name: "9.9" if name == "torch"
                        else real(name))
    assert resources.lock_file() == LOCK
