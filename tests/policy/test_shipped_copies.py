"""The policies ship inside the package (appliance/data/policy/, what every install has) as
byte-identical copies of the repository's policy/*.toml (what users read and edit)."""

from __future__ import annotations

from pathlib import Path

import appliance
from appliance.resources import POLICY_DIR, shipped_policy

REPO = Path(__file__).resolve().parents[2]


def test_package_copies_equal_the_repository_policies() -> None:
    """Same names, same bytes; after editing policy/*.toml, copy it into the package:
    `cp policy/*.toml appliance/data/policy/`."""
    ours = {p.name: p.read_bytes() for p in (REPO / "policy").glob("*.toml")}
    shipped = {p.name: p.read_bytes() for p in POLICY_DIR.glob("*.toml")}
    assert sorted(shipped) == sorted(ours)
    stale = [name for name in ours if shipped[name] != ours[name]]
    assert not stale, f"appliance/data/policy/ is stale for {stale}: cp policy/*.toml " \
                      "appliance/data/policy/"


def test_shipped_policy_reads_the_package_copy() -> None:
    """`shipped_policy` resolves inside the package, not the checkout's policy/."""
    assert shipped_policy("default").parent == POLICY_DIR
    assert POLICY_DIR.is_relative_to(Path(appliance.__file__).parent)
