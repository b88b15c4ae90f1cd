"""A process that reports events like the trainer does, to test StopFlag under SIGTERM.

Usage: python -m tests.train.stop_helper MODE, with the event pipe in $APPLIANCE_EVENT_FD.
- `blocked`: no step completed; the main thread is stuck writing one event larger than the
  pipe (holding the event writer's lock) when the signal comes.
- `flood`: steps completed; the main thread writes events in a tight loop (so a signal
  almost always lands while it holds the writer's lock) and stops at a "step boundary".
"""

from __future__ import annotations

import os
import sys
import time

from appliance.train.cancel import EXIT_STOPPED, StopFlag
from appliance.train.events import EVENT_FD_ENV, EventWriter


def main() -> int:
    """Run one mode; exit 3 when stopped."""
    events = EventWriter(int(os.environ[EVENT_FD_ENV]))
    stop = StopFlag(events.emit)
    stop.install()
    events.emit("started", pid=os.getpid())
    if sys.argv[1] == "blocked":
        events.emit("big", blob="x" * 1_000_000)
        while True:  # the watcher thread ends the process
            time.sleep(1)
    stop.progressed()
    step = 0
    while not stop.requested:
        step += 1
        events.emit("step", step=step)
    events.emit("stopped", step=step, checkpoint=True)
    return EXIT_STOPPED


if __name__ == "__main__":
    sys.exit(main())
