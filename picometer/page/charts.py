"""The page's charts as inline SVG strings, drawn on the server from plain numbers. Pure: no I/O, no clock.

Colours come from the page's stylesheet through classes (c0 ... c5, the last for the rest), so the charts
follow its light or dark look."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from html import escape

from picometer.numbers import money

SERIES_SHOWN = 5  # workflows with a colour of their own; the rest share one
REST = "the rest"
WIDTH, HEIGHT = 360, 170  # the viewBox: about a phone's width, so the text stays legible when it is scaled
LEFT, BOTTOM, TOP = 30, 16, 8  # margins: the amounts' axis (at least), the days, the top


def top_series(by_name: Mapping[str, Sequence[float]], shown: int = SERIES_SHOWN) -> list[tuple[str, list[float]]]:
    """The `shown` biggest spenders over the whole span, each with its values, then everyone else summed."""
    ranked = sorted(by_name.items(), key=lambda item: (-sum(item[1]), item[0]))
    out = [(name, list(values)) for name, values in ranked[:shown]]
    rest = ranked[shown:]
    if rest:
        out.append((REST, [sum(column) for column in zip(*(v for _, v in rest), strict=True)]))
    return out


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten at or above `value` (a round top for the axis)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return float(next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value * (1 - 1e-9)))


def daily_bars(days: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], title: str) -> str:
    """Stacked bars, one per day (ISO dates, oldest first), one colour per series, a <title> on each piece."""
    totals = [sum(values[i] for _, values in series) for i in range(len(days))]
    top = nice_ceiling(max(totals, default=0.0))
    labels = {fraction: money(top * fraction) if fraction else "$0" for fraction in (0.0, 0.5, 1.0)}
    left = max(LEFT, 6 * max(len(text) for text in labels.values()) + 6)  # room for the longest amount
    plot_w, plot_h = WIDTH - left, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(days), 1)
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction, label in labels.items():
        y = TOP + plot_h * (1 - fraction)
        out.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{WIDTH}" y2="{y:.1f}"/>')
        out.append(f'<text class="axis" x="{left - 4}" y="{y + 3:.1f}" text-anchor="end">{escape(label)}</text>')
    for i, day in enumerate(days):
        x = left + slot * i + slot * 0.15
        mday = date.fromisoformat(day).day  # the month is in the chart's title
        out.append(f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{HEIGHT - 4}" text-anchor="middle">{mday}</text>')
        base = float(TOP + plot_h)
        for k, (name, values) in enumerate(series):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / top
            base -= h
            tip = escape(f"{day} {name}: {money(value)}")
            out.append(
                f'<rect class="c{k}" x="{x:.1f}" y="{base:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}">'
                f"<title>{tip}</title></rect>"
            )
    if not any(totals):
        out.append(f'<text class="axis" x="{left + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
                   'text-anchor="middle">no spend on these days</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def legend(series: Sequence[tuple[str, Sequence[float]]]) -> str:
    """The colours' names under a chart, each with the series' total."""
    items = "".join(
        f'<li><i class="k{k}"></i>{escape(name)} {escape(money(sum(values)))}</li>' for k, (name, values) in
        enumerate(series)
    )  # fmt: skip
    return f'<ul class="legend">{items}</ul>'


def gauge(used: float | None) -> str:
    """How much of a cap is used, as a bar: plain under 80 %, amber from 80 %, red once reached."""
    share = min(max(used or 0.0, 0.0), 1.0)
    level = "over" if (used or 0) >= 1 else "warn" if (used or 0) >= 0.8 else "fine"
    return (
        '<svg class="gauge" viewBox="0 0 100 6" preserveAspectRatio="none" aria-hidden="true">'
        '<rect class="track" width="100" height="6"/>'
        f'<rect class="{level}" width="{share * 100:.1f}" height="6"/></svg>'
    )
