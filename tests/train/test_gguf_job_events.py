"""The GGUF child job's `done` event reaches the parent as `done`: the writer's tensor type
travels as `gguf_type` (an event's own `type` is its kind; a `type` field would turn the
event into another kind and the parent would never see the export finish)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from appliance.export import gguf_job, gguf_writer
from appliance.train.events import EventWriter, read_events


@pytest.mark.parametrize(("mode", "wrote"), [
    ("model", {"type": "q8_0", "tensors": 272, "names": ["token_embd.weight"]}),
    ("adapter", {"type": "lora-f32", "tensors": 120, "names": ["a"], "alpha": 16.0,
                 "rank": 8}),
])
def test_the_done_event_arrives_as_done_with_the_tensor_type(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str,
        wrote: dict[str, Any]) -> None:
    """Over a real event channel (EventWriter on a pipe, read_events), the job's last event
    is `done` with gguf_type, tensors (and the adapter's rank and alpha), no names."""
    monkeypatch.setattr(gguf_writer, "write_gguf", lambda *a: dict(wrote))
    monkeypatch.setattr(gguf_writer, "write_lora_gguf", lambda *a: dict(wrote))
    (tmp_path / "config.json").write_text("{}")
    read_fd, write_fd = os.pipe()
    job = {"kind": "gguf", "mode": mode, "source": str(tmp_path), "out": str(tmp_path / "o"),
           "qtype": "q8_0", "name": "n", "base_config": str(tmp_path / "config.json")}
    assert gguf_job.run(job, EventWriter(write_fd).emit) == 0
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as channel:
        events = list(read_events(channel))
    assert [e["type"] for e in events] == ["done"]
    expected = {k: v for k, v in wrote.items() if k not in ("names", "type")}
    assert events[0] == {"type": "done", "gguf_type": wrote["type"], **expected}
