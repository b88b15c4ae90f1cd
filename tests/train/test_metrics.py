"""metrics.jsonl rewinding before a resume: lines after the checkpoint (and a torn last line
from a kill -9) go, atomically; the rest stays byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

from appliance.train import metrics


def _write(path: Path) -> list[str]:
    lines = [json.dumps({"type": "eval", "phase": "before", "loss": 2.0}, sort_keys=True)]
    for step in (1, 2, 3):
        lines.append(json.dumps({"type": "step", "step": step, "loss": 1.0}, sort_keys=True))
        if step == 2:
            lines.append(json.dumps({"type": "checkpoint", "step": 2}, sort_keys=True))
    lines.append(json.dumps({"type": "eval", "phase": "after", "loss": 1.0}, sort_keys=True))
    path.write_text("\n".join(lines) + "\n" + '{"type": "step", "st')  # torn by kill -9
    return lines


def test_rewind_keeps_lines_up_to_the_checkpoint(tmp_path: Path) -> None:
    """Resuming from step 2 drops step 3, the final eval (made again on resume) and the torn
    line; keeps the first eval."""
    path = tmp_path / "metrics.jsonl"
    lines = _write(path)
    assert metrics.rewind(path, 2) == 3
    assert path.read_text() == "\n".join(lines[:4]) + "\n"
    assert metrics.rewind(path, 2) == 0  # idempotent
    metrics.append(path, {"type": "resumed", "step": 2})
    assert json.loads(path.read_text().splitlines()[-1]) == {"type": "resumed", "step": 2}


def test_rewind_without_a_checkpoint_starts_over(tmp_path: Path) -> None:
    """A run resumed with no checkpoint restarts at step 0: nothing of the old file stays;
    a missing file is fine."""
    path = tmp_path / "metrics.jsonl"
    _write(path)
    metrics.rewind(path, None)
    assert path.read_text() == ""
    assert metrics.rewind(tmp_path / "absent.jsonl", 3) == 0


def test_rewind_drops_the_final_general_eval_and_the_best_choice(tmp_path: Path) -> None:
    """Evaluations during training up to the checkpoint stay; the general-text eval after
    training and the `best` choice (both made again on resume) go."""
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps(e, sort_keys=True) for e in (
        {"type": "general", "phase": "before", "loss": 3.0},
        {"type": "eval", "phase": "during", "step": 2, "loss": 1.5},
        {"type": "checkpoint", "step": 2},
        {"type": "best", "step": 2, "loss": 1.5},
        {"type": "general", "phase": "after", "loss": 3.1})]
    path.write_text("\n".join(lines) + "\n")
    assert metrics.rewind(path, 2) == 2
    assert path.read_text() == "\n".join(lines[:3]) + "\n"
