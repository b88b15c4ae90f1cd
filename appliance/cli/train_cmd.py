"""`appliance train` (placeholder until the trainer lands)."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the `train` command."""
