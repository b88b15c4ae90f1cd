"""One detected span: what every detector returns and the operators replace."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Detection:
    """One detected span."""

    entity: str
    start: int
    end: int
    score: float
