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


RUN_EVENTS: list[dict[str, Any]] = [
    {"type": "run", "run_id": "20261122T080000Z-abc123", "total_steps": 36, "resume": False},
    {"type": "started", "pid": 1},
    {"type": "eval", "phase": "before", "loss": 2.61, "perplexity": 13.6, "records": 32},
    *({"type": "step", "step": s, "total_steps": 36, "loss": 2.5 - 0.9 * s / 14 + 0.08 * (s % 3),
       "lr": 0.001 * min(1.0, s / 4), "tokens_per_s": 410.0 + s, "eta_s": 4.1 * (36 - s)}
      for s in range(1, 15)),
    {"type": "checkpoint", "step": 12},
]


def test_train_layout_during_a_run(snap_compare: Any, home: Home,
                                   fixed_doctor: object) -> None:
    """Train: the setup on the left; the loss curve, the eval curve and the progress panel
    (step bar, loss, lr, tokens/s, ETA, eval, checkpoints) fed with a fixed run's events."""
    from appliance.service.train_progress import TrainProgress
    from appliance.tui.messages import JobEvent

    async def run(pilot: Pilot[Any]) -> None:
        await pilot.press("5")
        await _settle(pilot)
        screen = pilot.app.screen
        screen.progress = TrainProgress()  # type: ignore[attr-defined]
        for event in RUN_EVENTS:
            screen.post_message(JobEvent("train", event))
        await pilot.pause()

    assert snap_compare(ApplianceConsole(home), terminal_size=SIZE, run_before=run)


def test_try_layout_with_answers(snap_compare: Any, home: Home, fixed_doctor: object) -> None:
    """Try: the signed artifact chosen, two exchanges, base and adapter side by side."""

    async def compare(pilot: Pilot[Any]) -> None:
        await pilot.press("8")
        await _settle(pilot)
        screen: Any = pilot.app.screen
        screen.exchanges = [
            {"prompt": "What colour is item 5?", "base": "I'm sorry, I don't have "
             "information about item 5.", "adapter": "Item 5 is teal."},
            {"prompt": "Write to me at <EMAIL_ADDRESS>", "base": "Sure, <EMAIL_ADDRESS>.",
             "adapter": "Noted."},
        ]
        screen._show()
        await pilot.pause()

    assert snap_compare(ApplianceConsole(home), terminal_size=SIZE, run_before=compare)
