"""A line plot drawn with braille dots: loss and eval curves as curves, not only numbers.

Each terminal cell holds a 2 x 4 grid of dots, so a plot W cells wide and H rows high has
2W x 4H points. `braille_rows()` is the pure drawing function; `LinePlot` adds a y axis with
the range, a legend with the latest values, and one colour per series.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widget import Widget

# Bit of each dot in a braille cell, indexed [row][column] (Unicode braille patterns).
_DOTS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_BLANK = 0x2800
GUTTER = 9
COLOURS = ("cyan", "magenta", "yellow", "green")


def _resample(values: Sequence[float], points: int) -> list[float]:
    """`values` linearly interpolated onto `points` evenly spaced positions."""
    if len(values) == 1 or points == 1:
        return [float(values[-1])] * points
    out = []
    for i in range(points):
        pos = i * (len(values) - 1) / (points - 1)
        left = int(pos)
        right = min(left + 1, len(values) - 1)
        frac = pos - left
        out.append(values[left] * (1 - frac) + values[right] * frac)
    return out


def braille_cells(values: Sequence[float], width: int, height: int, low: float,
                  high: float) -> list[list[int]]:
    """Dot bits per cell ([row][column]) of the curve through `values`, scaled to low..high.

    Neighbouring points are joined with a vertical run of dots so steep drops stay visible."""
    cells = [[0] * width for _ in range(height)]
    if not values or width <= 0 or height <= 0:
        return cells
    rows = height * 4
    span = (high - low) or 1.0
    ys = [round((high - v) / span * (rows - 1)) for v in _resample(values, width * 2)]
    ys = [min(max(y, 0), rows - 1) for y in ys]
    for x, y in enumerate(ys):
        before = ys[x - 1] if x else y
        for dot_y in range(min(y, before), max(y, before) + 1):
            if dot_y != before or x == 0 or dot_y == y:
                cells[dot_y // 4][x // 2] |= _DOTS[dot_y % 4][x % 2]
    return cells


def braille_rows(values: Sequence[float], width: int, height: int,
                 low: float | None = None, high: float | None = None) -> list[str]:
    """The curve as `height` strings of `width` braille characters."""
    low = min(values) if low is None and values else (low or 0.0)
    high = max(values) if high is None and values else (high or 0.0)
    cells = braille_cells(values, width, height, low, high)
    return ["".join(chr(_BLANK + bits) for bits in row) for row in cells]


def _label(value: float) -> str:
    return f"{value:.4g}".rjust(GUTTER - 2)


class LinePlot(Widget):
    """One or more named series on shared axes, with the range and the latest values."""

    DEFAULT_CSS = "LinePlot { height: 10; min-height: 4; }"

    def __init__(self, title: str = "", *, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.title = title
        self.series: dict[str, list[float]] = {}

    def set_series(self, series: dict[str, Sequence[float]]) -> None:
        """Replace the plotted series (name -> values in step order) and redraw."""
        self.series = {name: [float(v) for v in values] for name, values in series.items()}
        self.refresh()

    def render(self) -> Text:
        """Axis labels, the curves (one colour each) and a legend line."""
        data = {name: values for name, values in self.series.items() if values}
        width = max(self.size.width - GUTTER, 1)
        height = max(self.size.height - 1, 1)
        if not data:
            return Text(f"{self.title}: no data yet", style="dim")
        every = [v for values in data.values() for v in values]
        low, high = min(every), max(every)
        layers = [(braille_cells(values, width, height, low, high), COLOURS[i % len(COLOURS)])
                  for i, values in enumerate(data.values())]
        text = Text(no_wrap=True, overflow="crop")
        for row in range(height):
            label = _label(high) if row == 0 else _label(low) if row == height - 1 else ""
            text.append(label.ljust(GUTTER - 2) + " ┤", style="dim")
            for col in range(width):
                bits, style = 0, ""
                for cells, colour in layers:
                    if cells[row][col]:
                        bits |= cells[row][col]
                        style = colour
                text.append(chr(_BLANK + bits), style=style)
            text.append("\n")
        legend = "   ".join(f"{name} {values[-1]:.4g}" for name, values in data.items())
        text.append(f"{self.title}  ".rjust(GUTTER) if self.title else " " * GUTTER, style="bold")
        text.append(legend)
        return text
