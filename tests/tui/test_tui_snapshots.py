"""Layout snapshots (SVG, pytest-textual-snapshot) of the Overview and Policy pages with a
fixed home and terminal size. Update after an intended change with
`pytest tests/tui/test_tui_snapshots.py --snapshot-update` and review the SVG diff."""

from __future__ import annotations

from typing import Any

from textual.pilot import Pilot

from appliance.home import Home
from appliance.tui.app import ApplianceConsole

SIZE = (120, 36)


async def _settle(pilot: Pilot[Any]) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_overview_layout(snap_compare: Any, home: Home, fixed_doctor: object) -> None:
    """Overview: home and policy, keys, runs, doctor and audit panels side by side."""
    assert snap_compare(ApplianceConsole(home), terminal_size=SIZE, run_before=_settle)


def test_policy_layout_with_a_diff(snap_compare: Any, home: Home,
                                   fixed_doctor: object) -> None:
    """Policy: the effective policy on the left, a diff against other.toml on the right."""

    async def compare(pilot: Pilot[Any]) -> None:
        await pilot.press("2")
        await _settle(pilot)
        await pilot.press("c", *"other.toml", "enter")
        await _settle(pilot)
        await pilot.press("escape")
        await pilot.pause()

    assert snap_compare(ApplianceConsole(home), terminal_size=SIZE, run_before=compare)


def test_help_layout(snap_compare: Any, home: Home, fixed_doctor: object) -> None:
    """Help: every page key and the global keys in one dialog."""
    assert snap_compare(ApplianceConsole(home), terminal_size=SIZE, press=["question_mark"],
                        run_before=_settle)
