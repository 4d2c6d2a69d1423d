"""Chart geometry for the dashboard, drawn as inline SVG by the templates.

Server-side SVG needs no JavaScript, no CDN and no internet, costs a few
kilobytes per chart and renders as fast as the HTML around it. This module
only turns data into coordinates and labels; ``analytics/charts/*.svg.html``
draw them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from analytics.selectors import MetricPoint

WIDTH = 760
HEIGHT = 220
# Room for the axis labels left of and below the plot.
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 10, 24


@dataclass(frozen=True)
class Tick:
    position: float
    label: str
    anchor: str = "middle"  # SVG text-anchor: the last time label ends at the edge instead of past it


@dataclass(frozen=True)
class Chart:
    """A plot area with axes; ``points``/``band`` for lines, ``bars`` for columns."""

    width: int = WIDTH
    height: int = HEIGHT
    line: str = ""  # SVG polyline points
    band: str = ""  # SVG polygon points (min..max envelope)
    bars: list[Bar] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not (self.line or self.bars)


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    title: str
    series: int = 0  # which series of a stacked chart: its colour


def _nice_step(span: float, target: int) -> float:
    """A 1, 2 or 5 times a power of ten step giving about ``target`` ticks over ``span``."""
    raw = span / max(target, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 5, 10):
        if raw <= multiple * magnitude:
            return multiple * magnitude
    return 10 * magnitude


def _format_number(value: float) -> str:
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if abs(value) >= 1_000:
        return f"{value / 1_000:g}k"
    return f"{value:g}"


class _Scale:
    """Maps data to pixels: time on x over [start, end), values on y over nice bounds."""

    def __init__(self, *, start: datetime, end: datetime, low: float, high: float) -> None:
        self.start, self.end = start, end
        self.bottom, self.top = HEIGHT - BOTTOM, TOP
        if high == low:
            high, low = high + 1, low - (1 if low < 0 else 0)
        step = _nice_step(high - low, 4)
        self.low = math.floor(low / step) * step
        self.high = math.ceil(high / step) * step
        self.step = step

    def x(self, moment: datetime) -> float:
        fraction = (moment - self.start) / (self.end - self.start)
        return round(LEFT + fraction * (WIDTH - RIGHT - LEFT), 1)

    def y(self, value: float) -> float:
        fraction = (value - self.low) / (self.high - self.low)
        return round(self.bottom - fraction * (self.bottom - self.top), 1)

    def y_ticks(self) -> list[Tick]:
        count = round((self.high - self.low) / self.step)
        return [
            Tick(self.y(self.low + i * self.step), _format_number(self.low + i * self.step)) for i in range(count + 1)
        ]

    def x_ticks(self, count: int = 6) -> list[Tick]:
        span = self.end - self.start
        label = "%H:%M" if span <= timedelta(days=1) else "%b %d"
        return [
            Tick(self.x(moment), moment.strftime(label), "end" if i == count else "middle")
            for i, moment in enumerate(self.start + span * i / count for i in range(count + 1))
        ]


def line_chart(points: Sequence[MetricPoint], *, start: datetime, end: datetime) -> Chart:
    """The average per bucket as a line over a band from the minimum to the maximum."""
    if not points:
        return Chart()
    scale = _Scale(start=start, end=end, low=min(p.min for p in points), high=max(p.max for p in points))
    line = " ".join(f"{scale.x(p.bucket)},{scale.y(p.avg)}" for p in points)
    upper = [f"{scale.x(p.bucket)},{scale.y(p.max)}" for p in points]
    lower = [f"{scale.x(p.bucket)},{scale.y(p.min)}" for p in reversed(points)]
    return Chart(line=line, band=" ".join(upper + lower), x_ticks=scale.x_ticks(), y_ticks=scale.y_ticks())


def column_chart(counts: Sequence[tuple[datetime, int]], *, start: datetime, end: datetime, bucket: timedelta) -> Chart:
    """One column per bucket (events per bucket)."""
    if not counts:
        return Chart()
    scale = _Scale(start=start, end=end, low=0, high=max(count for _, count in counts))
    column = max(scale.x(start + bucket) - scale.x(start) - 1, 1)
    bars = [
        Bar(
            x=scale.x(moment),
            y=scale.y(count),
            width=round(column, 1),
            height=round(scale.y(0) - scale.y(count), 1),
            title=f"{moment:%Y-%m-%d %H:%M}: {count}",
        )
        for moment, count in counts
    ]
    return Chart(bars=bars, x_ticks=scale.x_ticks(), y_ticks=scale.y_ticks())


def stacked_column_chart(
    series: Sequence[Sequence[tuple[datetime, int]]], *, start: datetime, end: datetime, bucket: timedelta
) -> Chart:
    """One column per bucket, the series stacked in order (events per type per bucket)."""
    totals: dict[datetime, int] = {}
    for counts in series:
        for moment, count in counts:
            totals[moment] = totals.get(moment, 0) + count
    if not totals:
        return Chart()
    scale = _Scale(start=start, end=end, low=0, high=max(totals.values()))
    column = round(max(scale.x(start + bucket) - scale.x(start) - 1, 1), 1)
    stacked: dict[datetime, int] = {}
    bars = []
    for index, counts in enumerate(series):
        for moment, count in counts:
            below = stacked.get(moment, 0)
            stacked[moment] = below + count
            top = scale.y(below + count)
            bars.append(
                Bar(
                    x=scale.x(moment),
                    y=top,
                    width=column,
                    height=round(scale.y(below) - top, 1),
                    title=f"{moment:%Y-%m-%d %H:%M}: {count}",
                    series=index,
                )
            )
    return Chart(bars=bars, x_ticks=scale.x_ticks(), y_ticks=scale.y_ticks())


def duration_label(width: timedelta) -> str:
    """A bucket width as people say it: "15 min", "1 h", "6 h", "1 day"."""
    seconds = int(width.total_seconds())
    for unit, name in ((86_400, "day"), (3_600, "h"), (60, "min")):
        if seconds >= unit and seconds % unit == 0:
            count = seconds // unit
            return f"{count} {name}{'s' if name == 'day' and count > 1 else ''}"
    return f"{seconds} s"
