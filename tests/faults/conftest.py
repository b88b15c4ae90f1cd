"""Fixtures for the fault and bad-input tests: an initialised home under a cheap-KDF policy,
and helpers that run the real command line and check its one-line refusals."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PASSPHRASE = b"correct horse battery staple"
CHEAP_KDF = (("memory_kib = 262144", "memory_kib = 8192"), ("iterations = 3", "iterations = 1"),
             ("lanes = 4", "lanes = 1"))


def write_fast_policy(path: Path) -> Path:
    """The shipped default policy with a cheap Argon2id (tests only)."""
    from appliance.resources import shipped_policy

    text = shipped_policy("default").read_text()
    for old, new in CHEAP_KDF:
        assert old in text, old
        text = text.replace(old, new, 1)
    path.write_text(text)
    return path


@pytest.fixture(scope="session")
def fast_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default policy with a cheap KDF, written once per session."""
    return write_fast_policy(tmp_path_factory.mktemp("policy") / "fast.toml")


@dataclass(frozen=True)
class Done:
    """What one command run left: exit code and stderr."""

    code: int
    err: str
    out: str = ""


def one_line(done: Done, code: int, *needles: str) -> str:
    """Assert `done` failed with exit `code` and exactly one stderr line (no traceback, no
    internal error) containing every needle; returns the line."""
    lines = [line for line in done.err.splitlines() if line.strip()]
    assert done.code == code, (done.code, done.err)
    assert len(lines) == 1, done.err
    line = lines[0]
    assert line.startswith("appliance: ") and "internal error" not in line, line
    assert "Traceback" not in done.err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Done]:
    """Run `appliance ARGS` in-process (appliance.cli.main.main)."""
    from appliance.cli.main import main

    def run(*args: str) -> Done:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Done(code, captured.err, captured.out)

    return run


def run_child(*args: str, timeout: float = 120, env: dict[str, str] | None = None,
              prelude: str = "", **kwargs: object) -> Done:
    """Run `appliance ARGS` in a child Python (for inputs that could hang or limits that
    must not touch the test process); `prelude` is Python run first in the child."""
    code = (f"import sys\n{prelude}\nfrom appliance.cli.main import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout, check=False,
                          **kwargs)  # type: ignore[call-overload]
    return Done(done.returncode, done.stderr, done.stdout)


@pytest.fixture
def pass_file(tmp_path: Path) -> Path:
    """The passphrase of `home`, in a file only its owner can read."""
    path = tmp_path / "pass"
    path.write_bytes(PASSPHRASE + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def home(tmp_path: Path, fast_policy: Path) -> Path:
    """An initialised home (fast KDF); the test process holds no key."""
    from appliance import trust
    from appliance.home import Home
    from appliance.service.home import init_home

    root = tmp_path / "home"
    init_home(Home(root), PASSPHRASE, fast_policy)
    trust.forget(Home(root))
    return root
