"""Fixtures of the privacy tests: the training area's converted default model and homes."""

from __future__ import annotations

from tests.train.conftest import converted_model, pass_file, train_home

__all__ = ["converted_model", "pass_file", "train_home"]
