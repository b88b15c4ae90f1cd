"""The console as a person uses it: `appliance tui` in a real terminal (tmux), keys sent with
send-keys, the screen read back with capture-pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.home import Home

REPO = Path(__file__).resolve().parents[2]
TMUX = shutil.which("tmux")


class Terminal:
    """One tmux session on a private server socket, 120 x 36."""

    def __init__(self, socket: Path, name: str = "console") -> None:
        self.base = [str(TMUX), "-S", str(socket)]
        self.name = name

    def start(self, command: str, cwd: Path, env: dict[str, str]) -> None:
        """Run `command` in a new detached session."""
        subprocess.run([*self.base, "new-session", "-d", "-s", self.name, "-x", "120",
                        "-y", "36", "-c", str(cwd), command], check=True, env=env)

    def keys(self, *keys: str, literal: bool = False) -> None:
        """Send keys (tmux names, or text with literal=True)."""
        flag = ["-l"] if literal else []
        subprocess.run([*self.base, "send-keys", "-t", self.name, *flag, *keys], check=True)

    def screen(self) -> str:
        """The visible pane as text."""
        done = subprocess.run([*self.base, "capture-pane", "-p", "-t", self.name],
                              capture_output=True, text=True, check=False)
        return done.stdout

    def wait_for(self, check: Callable[[str], bool], what: str, timeout: float = 30) -> str:
        """Poll the pane until `check(text)` holds."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            text = self.screen()
            if check(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; screen:\n{self.screen()}")

    def alive(self) -> bool:
        """Whether the session still exists."""
        return subprocess.run([*self.base, "has-session", "-t", self.name],
                              capture_output=True, check=False).returncode == 0

    def close(self) -> None:
        """Stop this tmux server (only the one on our private socket)."""
        subprocess.run([*self.base, "kill-server"], capture_output=True, check=False)


def in_field(page_key_label: str) -> Callable[[str], bool]:
    """True once a text field has the cursor: the footer then drops the page's letter keys
    (they type into the field), so `page_key_label` disappears from the last line."""
    return lambda screen: page_key_label not in screen.rstrip().splitlines()[-1]


@pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")
def test_operator_session_in_a_real_terminal(home: Home, tmp_path: Path) -> None:
    """Start `appliance tui`, go to Policy and diff a file, filter the audit log, get help,
    and quit with q, reading each screen back from the terminal."""
    term = Terminal(tmp_path / "tmux.sock")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TERM": "xterm-256color"}
    # the home is a fixture that only looks initialised: the trust guard is switched off in
    # the console's own process by the same test-only module switch the in-process tests use
    console = ("import sys, appliance.trust as t; t._DISABLED = True; "
               "from appliance.cli.main import main; sys.exit(main(['tui', '--home', 'home']))")
    command = f"{sys.executable} -c \"{console}\"; echo EXITED $?; sleep 30"
    term.start(command, tmp_path, env)
    try:
        term.wait_for(lambda s: "Home and policy" in s and "entries 5" in s, "the overview")
        term.keys("2")
        term.wait_for(lambda s: "Effective policy" in s and "snapshot" in s, "the policy")
        term.keys("c")
        term.wait_for(in_field("Compare with file"), "the cursor in the path field")
        term.keys("other.toml", literal=True)
        term.keys("Enter")
        term.wait_for(lambda s: all(k in s for k in ("3 setting(s) differ", "meta.name",
                                                     "training.eval_fraction",
                                                     "intake.on_invalid")), "the diff")
        term.keys("Escape")
        time.sleep(0.3)
        term.keys("7")
        term.wait_for(lambda s: "Verify chain" in s and "train.finish" in s, "the audit page")
        term.keys("/")
        term.wait_for(in_field("Verify chain"), "the cursor in the filter")
        term.keys("outcome=failed", literal=True)
        term.wait_for(lambda s: "1 match the filter" in s and "train.finish" in s
                      and "dataset.import" not in s, "the filtered log")
        term.keys("Escape")
        time.sleep(0.3)
        term.keys("?")
        term.wait_for(lambda s: "go to Artifacts" in s, "the help")
        term.keys("Escape")
        time.sleep(0.3)
        term.keys("q")
        screen = term.wait_for(lambda s: "EXITED" in s, "the console to exit")
        assert "EXITED 0" in screen and "Traceback" not in screen
    finally:
        term.close()
