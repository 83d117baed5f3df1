"""Numbers for people, the same on every face: money with at least two significant digits however small
(a Pi's automations spend fractions of a cent), whole cents from a dollar up, and tokens with thousands
separators. Machines get the exact values (the CSV, JSON, the usage log)."""

from __future__ import annotations

import math
from datetime import datetime, tzinfo


def money(dollars: float) -> str:
    """$12.35, $0.33, $0.032, $0.00042, $0.0000012, $0."""
    if dollars == 0:
        return "$0"
    size = abs(dollars)
    if size >= 1:
        return f"${dollars:,.2f}"
    places = max(2, 1 - math.floor(math.log10(size)))  # two significant digits
    return f"${dollars:.{places}f}"


def moment(at: datetime, zone: tzinfo) -> str:
    """A time for people: local, to the minute, with the zone's name (2026-11-30 17:00 CET)."""
    return at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def count(n: float) -> str:
    """13,483."""
    return f"{n:,.0f}"
