"""Shared widgets: the braille line plot and the banner."""

from __future__ import annotations

import asyncio

from textual.app import App, ComposeResult

from appliance.tui.widgets.banner import Banner
from appliance.tui.widgets.lineplot import LinePlot, braille_cells, braille_rows


def test_braille_plot_of_a_falling_line_runs_corner_to_corner() -> None:
    """A falling straight line starts top-left and ends bottom-right, one dot per column."""
    cells = braille_cells([10.0, 0.0], width=4, height=2, low=0.0, high=10.0)
    assert cells[0][0] & 0x01  # top-left dot
    assert cells[1][3] & 0x80  # bottom-right dot
    dots = sum(bin(bits).count("1") for row in cells for bits in row)
    assert dots == 8  # 8 columns of dots, one each


def test_braille_plot_joins_a_steep_drop() -> None:
    """A jump between neighbouring points is drawn as a vertical run, not two lone dots."""
    cells = braille_cells([8.0, 8.0, 0.0, 0.0], width=2, height=2, low=0.0, high=8.0)
    dots = sum(bin(bits).count("1") for row in cells for bits in row)
    assert dots > 4


def test_braille_rows_are_the_requested_size() -> None:
    """Rows and columns match the requested plot size; a flat series stays on one row."""
    rows = braille_rows([1.0] * 5, width=7, height=3)
    assert len(rows) == 3 and all(len(r) == 7 for r in rows)
    assert sum(1 for r in rows if r.strip("\u2800")) == 1


class _PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Banner(id="banner")
        yield LinePlot("loss", id="plot")


def test_line_plot_widget_shows_range_and_latest_values() -> None:
    """The widget prints the axis range and each series' latest value."""

    async def main() -> str:
        app = _PlotApp()
        async with app.run_test(size=(60, 12)) as pilot:
            plot = app.query_one(LinePlot)
            plot.set_series({"train": [2.5, 2.0, 1.6, 1.4], "eval": [2.6, 2.2, 1.9, 1.8]})
            await pilot.pause()
            return "\n".join(s.text for s in app.screen._compositor.render_strips())

    text = asyncio.run(main())
    assert "2.6" in text and "1.4" in text
    assert "train 1.4" in text and "eval 1.8" in text
    assert any("\u2800" < ch <= "\u28ff" for ch in text)


def test_banner_is_one_line_whatever_the_message() -> None:
    """Newlines in a message are folded so the banner never grows into a traceback."""

    async def main() -> tuple[str, int]:
        app = _PlotApp()
        async with app.run_test(size=(60, 12)) as pilot:
            banner = app.query_one(Banner)
            banner.show_error("first line\nTraceback (most recent call last):\n  x")
            await pilot.pause()
            return banner.text, banner.size.height

    text, height = asyncio.run(main())
    assert "\n" not in text and text.startswith("✗ first line")
    assert height == 1
