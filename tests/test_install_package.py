"""A normal (non-editable) install of the package carries what it needs at run time: the
shipped policies live inside the package, so `appliance policy check` works on the shipped
default from any directory, with no checkout beside it and no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / "vendor_wheels"
NETNS = shutil.which("unshare") is not None and subprocess.run(
    ["unshare", "--net", "true"], check=False, capture_output=True).returncode == 0
pytestmark = pytest.mark.skipif(not any(WHEELS.glob("setuptools-*.whl")),
                                reason="the wheelhouse (vendor_wheels/*.whl) is not filled")


def _offline(cmd: list[str]) -> list[str]:
    return ["unshare", "--net", *cmd] if NETNS else cmd


def _source_copy(dest: Path) -> Path:
    """What `pip install .` reads (pyproject, README, the package), outside the checkout, so
    the build writes nothing into it."""
    dest.mkdir()
    shutil.copy2(REPO / "pyproject.toml", dest)
    shutil.copy2(REPO / "README.md", dest)
    shutil.copytree(REPO / "appliance", dest / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest


def _run(cmd: list[str], cwd: Path, timeout: int) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_"))}
    return subprocess.run(_offline(cmd), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _install_and_check(tmp_path: Path, venv: Path) -> None:
    """Install the package (not editable) into `venv`, then check the shipped default from a
    directory that is neither the checkout nor the source copy."""
    src = _source_copy(tmp_path / "src")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--isolated", "--disable-pip-version-check"]
    done = _run([*pip, "install", "--no-index", "--find-links", str(WHEELS), "--no-deps",
                 str(src)], tmp_path, 300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    shutil.rmtree(src)  # the install must not depend on its source
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(venv / "bin" / "python"), "-c",
                  "from appliance.resources import shipped_policy; print(shipped_policy())"],
                 elsewhere, 60)
    assert where.returncode == 0, where.stderr
    policy = Path(where.stdout.strip())
    assert policy.is_relative_to(venv) and policy.name == "default.toml"
    check = _run([str(venv / "bin" / "appliance"), "policy", "check", str(policy)], elsewhere,
                 120)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "default.toml" in check.stdout


def test_installed_package_checks_its_shipped_policy(tmp_path: Path) -> None:
    """A fresh virtualenv gets the package by `pip install SRC` (built offline from the
    locked setuptools); its dependencies are this environment's, installed from the lock
    (a path entry, no editable hook); the shipped default then checks from elsewhere."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    (site / "locked-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _install_and_check(tmp_path, venv)


@pytest.mark.slow
def test_fresh_install_from_the_lock_checks_its_shipped_policy(tmp_path: Path) -> None:
    """The whole lock into an empty virtualenv (scripts/install.sh with
    APPLIANCE_INSTALL_SELF=0), the package not editable, then the same check (minutes)."""
    venv = tmp_path / "venv"
    env = {**os.environ, "APPLIANCE_VENV": str(venv), "APPLIANCE_INSTALL_SELF": "0"}
    done = subprocess.run(_offline([str(REPO / "scripts" / "install.sh")]), env=env,
                          capture_output=True, text=True, timeout=1800, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    _install_and_check(tmp_path, venv)
