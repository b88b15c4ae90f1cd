"""The child-to-parent event channel: JSON lines on a dedicated pipe (not stdout, which
libraries may print to)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

EVENT_FD_ENV = "APPLIANCE_EVENT_FD"
PARENT_PID_ENV = "APPLIANCE_PARENT_PID"  # a child ends at once if its parent is gone


def read_events(lines: Iterable[bytes]) -> Iterator[dict[str, Any]]:
    """The events on a channel's read side, in order; a line that is not a JSON object (a
    torn last write of a killed child) is skipped."""
    for raw in lines:
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


class EventWriter:
    """Writes one JSON object per line to a file descriptor, thread-safely."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._lock = threading.Lock()

    def emit(self, kind: str, /, **fields: Any) -> None:
        """Send one event of type `kind`."""
        line = (json.dumps({"type": kind, **fields}, sort_keys=True, default=str)
                + "\n").encode("utf-8")
        with self._lock:
            view = memoryview(line)
            while view:
                written = os.write(self.fd, view)
                view = view[written:]
