"""Driving the console headless in tests: run a script under Pilot, wait, type, read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from textual.pilot import Pilot

SIZE = (120, 36)


def drive(app: Any, script: Callable[[Pilot[int]], Awaitable[None]]) -> None:
    """Run `script` against the app in a headless terminal of SIZE."""

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await script(pilot)

    asyncio.run(main())


async def settle(pilot: Pilot[int]) -> None:
    """Wait for every worker (and the child processes they watch) and the repaint."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def type_text(pilot: Pilot[int], text: str) -> None:
    """Type into the focused field, key by key."""
    for char in text:
        await pilot.press("space" if char == " " else char)


def screen_text(app: Any) -> str:
    """Everything on the terminal as plain text."""
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


def banner(app: Any) -> str:
    """The page's one-line message."""
    return str(app.screen.query_one("#banner").text)


async def wait_until(pilot: Pilot[int], check: Callable[[], bool], what: str,
                     timeout: float = 300) -> None:
    """Poll the app (while a child works, Pilot cannot wait for an idle CPU)."""
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, f"timed out waiting for {what}:\n" + \
            screen_text(pilot.app)
        await pilot.pause(0.2)
