"""Messages workers post back to their screen ("attributes down, messages up")."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class JobDone(Message):
    """A service call finished; `result` is its plain return value."""

    def __init__(self, job: str, result: Any) -> None:
        super().__init__()
        self.job = job
        self.result = result


class JobFailed(Message):
    """A service call failed; `line` is the one-line error with the next step."""

    def __init__(self, job: str, line: str) -> None:
        super().__init__()
        self.job = job
        self.line = line


class JobEvent(Message):
    """A child job (appliance.service.jobs.ChildJob) reported one JSON-line event."""

    def __init__(self, job: str, event: dict[str, Any]) -> None:
        super().__init__()
        self.job = job
        self.event = event
