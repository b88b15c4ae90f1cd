"""Long work in a child process at lower priority, reporting JSON-line events.

The console is one process with one event loop; it must answer a key within 100 ms while
training or an import runs. So long jobs run as `python -m appliance ... --json-events`
children: niced, in their own process group, their events read on a thread by the caller.
The passphrase travels through an inherited pipe (`--passphrase-file /dev/fd/N`): never on
disk, never in argv or the environment. The child is the same CLI an operator runs, so a
job started from the console does exactly what the command does (same checks, same audit
events, same exit codes). A child that fails ends its standard output with the CLI's
`{"type": "failed", "error": LINE, "exit_code": N}` event: that line is the job's error.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from appliance.errors import EXIT_OK, UsageError
from appliance.home import Home

NICENESS = 10
"""How much lower the job's CPU priority is than the console's (nice(1) increment)."""



@dataclass(frozen=True)
class JobOutcome:
    """How a child job ended."""

    returncode: int
    error: str | None
    """Why it failed (the CLI's own error line, from its `failed` event), else None."""
    output: list[str]
    """Lines of standard output that were not events (e.g. the artifact directory)."""

    @property
    def ok(self) -> bool:
        """True when the job exited 0."""
        return self.returncode == EXIT_OK

    @property
    def message(self) -> str:
        """The error as the console shows it; "" when ok."""
        return self.error or ""


class ChildJob:
    """One `appliance` command run as a niced child; iterate `events()` then `wait()`."""

    def __init__(self, home: Home, args: Sequence[str], *, passphrase: bytes | None = None,
                 niceness: int = NICENESS, label: str | None = None,
                 stdin: bytes | None = None) -> None:
        self.home = home
        self.label = label or "appliance " + " ".join(
            a for a in args[:2] if not a.startswith("-") and "/" not in a)
        self.args = list(args)
        self._passphrase = passphrase
        self._stdin = stdin
        """What the child reads on its standard input (e.g. `--prompts -`); else none."""
        self.niceness = niceness
        self.proc: subprocess.Popen[str] | None = None
        self._stderr_thread: threading.Thread | None = None
        self._output: list[str] = []
        self._failed: dict[str, Any] | None = None
        self.cancelled = False

    def command(self, fd: int | None) -> list[str]:
        """The argv of the child (the passphrase pipe's fd, if any, named as a file)."""
        prefix = [sys.executable, "-m", "appliance", "--home", str(self.home.root)]
        if fd is not None:
            prefix += ["--passphrase-file", f"/dev/fd/{fd}"]
        nice = shutil.which("nice")
        if nice and self.niceness:
            prefix = [nice, "-n", str(self.niceness), *prefix]
        return prefix + self.args

    def start(self) -> None:
        """Spawn the child; the passphrase is written into a pipe it inherits."""
        if self.proc is not None:
            raise UsageError("this job has already been started")
        read_fd: int | None = None
        if self._passphrase is not None:
            read_fd, write_fd = os.pipe()
            try:
                os.write(write_fd, self._passphrase)  # far below the pipe's buffer size
            finally:
                os.close(write_fd)
            self._passphrase = None
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("APPLIANCE_PASSPHRASE_FILE", None)
        try:
            self.proc = subprocess.Popen(
                self.command(read_fd),
                stdin=subprocess.DEVNULL if self._stdin is None else subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1, env=env,
                pass_fds=(read_fd,) if read_fd is not None else (), process_group=0)
        finally:
            if read_fd is not None:
                os.close(read_fd)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        if self._stdin is not None:
            threading.Thread(target=self._feed_stdin, args=(self._stdin,), daemon=True).start()
            self._stdin = None

    def _feed_stdin(self, data: bytes) -> None:
        if self.proc is None or self.proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ValueError, OSError):
            self.proc.stdin.write(data.decode("utf-8"))
            self.proc.stdin.close()

    def _drain_stderr(self) -> None:
        """Read the child's standard error (for a person, not parsed) so it never blocks."""
        if self.proc is None or self.proc.stderr is None:
            return
        for _ in self.proc.stderr:
            pass

    def events(self) -> Iterator[dict[str, Any]]:
        """The child's JSON-line events as they come (blocks; call from a worker thread).
        Other lines of standard output are kept for `wait().output`; the final `failed`
        event is kept for `wait().error`."""
        if self.proc is None or self.proc.stdout is None:
            raise UsageError("start the job first")
        for line in self.proc.stdout:
            text = line.strip()
            if not text:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                self._output.append(text)
                continue
            if isinstance(event, dict) and event.get("type") == "failed":
                self._failed = event
            elif isinstance(event, dict):
                yield event
            else:
                self._output.append(text)

    def cancel(self) -> None:
        """Ask the job to stop: SIGTERM, which training turns into a checkpoint at the next
        step boundary and an audited cancellation."""
        if self.proc is not None and self.proc.poll() is None:
            self.cancelled = True
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Stop the whole process group at once (the console is closing)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    @property
    def running(self) -> bool:
        """True while the child has not exited."""
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout: float | None = None) -> JobOutcome:
        """Wait for the child (after its events are read) and say how it ended."""
        if self.proc is None:
            raise UsageError("start the job first")
        for _ in self.events():  # drain what is left, so the child never blocks on a pipe
            pass
        returncode = self.proc.wait(timeout)
        if self._stderr_thread is not None:
            self._stderr_thread.join(5)
        error = None
        if returncode != EXIT_OK:
            if self._failed is not None:
                error = str(self._failed.get("error", ""))
            elif self.cancelled:
                error = f"{self.label}: cancelled at your request"
            else:
                error = f"{self.label}: stopped with exit code {returncode}"
        return JobOutcome(returncode, error, list(self._output))
