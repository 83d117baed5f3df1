"""Durations as people type them ("90s", "30m", "2h", "1d", "1h30m"). Pure."""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX = timedelta(days=366)


def parse_duration(text: str) -> timedelta:
    """A positive duration of at most a year; ValueError with an example otherwise."""
    compact = text.strip().lower().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration; write e.g. 90s, 30m, 2h, 1d or 1h30m")
    seconds = sum(float(n) * _UNIT_S[u] for n, u in parts)
    if seconds <= 0 or seconds > MAX.total_seconds():
        raise ValueError(f"{text!r} must be more than 0 and at most 366d")
    return timedelta(seconds=seconds)


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds to wait, at least 1: what a Retry-After header says."""
    return max(math.ceil((moment - now).total_seconds()), 1)


def format_duration(delta: timedelta) -> str:
    """Whole minutes for people: "2h 05m", "45m", "3d 4h"."""
    minutes = max(round(delta.total_seconds() / 60), 0)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"
