"""A run's `metrics.jsonl`: one event per line (numbers only, never record text).

Lines are appended as events arrive, so a run killed with -9 can leave lines for steps after
its last checkpoint, and a torn last line. Before a resume, `rewind` cuts the file back to
the checkpoint the run continues from (atomically), so every step appears once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appliance.fsutil import atomic_write_text


def append(path: Path, event: dict[str, Any]) -> None:
    """Add one event line."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event, sort_keys=True) + "\n")


def rewind(path: Path, step: int | None) -> int:
    """Keep the lines up to checkpoint `step` (lines without a step, such as the first
    evaluation, stay; the final evaluations and the choice of the best checkpoint go,
    since a resumed run always makes them again); None (a restart from step 0) keeps
    nothing. Unreadable lines go. Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    kept, dropped = [], 0
    for line in path.read_text("utf-8").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if (step is not None and isinstance(event, dict)
                and int(event.get("step", 0) or 0) <= step
                and event.get("phase") != "after" and event.get("type") != "best"):
            kept.append(line + "\n")
        else:
            dropped += 1
    if dropped:
        atomic_write_text(path, "".join(kept))
    return dropped
