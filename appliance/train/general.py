"""The general-text set shipped with the appliance (appliance/data/general/: CPython 3.11
standard-library docstrings, PSF-2.0; SOURCE.md records how it was made). The trainer
scores its perplexity before and after training as a regression guard; it never trains on
it."""

from __future__ import annotations

import json

from appliance.errors import InstallError
from appliance.resources import PACKAGE_DIR

GENERAL_FILE = PACKAGE_DIR / "data" / "general" / "paragraphs.jsonl"
SOURCE = "CPython 3.11.7 standard-library docstrings (PSF-2.0)"


def paragraphs(limit: int) -> list[str]:
    """The first `limit` paragraphs (a fixed order, so runs compare)."""
    if limit <= 0:
        return []
    try:
        lines = GENERAL_FILE.read_text("utf-8").splitlines()
    except OSError:
        raise InstallError("the shipped general-text set is missing", where=str(GENERAL_FILE),
                           hint="reinstall the appliance with scripts/install.sh") from None
    return [str(json.loads(line)["text"]) for line in lines[:limit] if line.strip()]
