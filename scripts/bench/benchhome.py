"""A throwaway appliance home for benchmarks, made through the service layer (`init_home`)
with a fixed benchmark passphrase; benchmarks do not import the test suite."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from appliance.home import Home
from appliance.resources import shipped_policy
from appliance.service.home import init_home

PASSPHRASE = "benchmark passphrase, not a secret\n"  # noqa: S105 - a throwaway bench home


def make_home(root: Path, policy_text: str | None = None) -> Home:
    """An initialised home at `root` under `policy_text` (the demo policy by default)."""
    source = root.parent / f".{root.name}-policy.toml"
    source.write_text(policy_text or shipped_policy("demo").read_text())
    home = Home(root)
    init_home(home, PASSPHRASE.strip().encode(), source)
    return home


def import_default_model(home: Home) -> Any:
    """The embedded default base model converted into `home` (its ModelRecord)."""
    from appliance.models import importer
    from appliance.policy import load_policy

    record, _, _ = importer.import_model(home, load_policy(home.policy_file),
                                         importer.default_gguf(), importer.DEFAULT_NAME)
    return record
