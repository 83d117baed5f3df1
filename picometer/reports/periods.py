"""Report periods in the operator's time zone, as UTC hour ranges for the rollups. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo

from picometer.metering.budget import period_key, period_start

PERIODS = ("today", "week", "month", "7d", "30d")


def period_bounds(period: str, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC. today/week (ISO, from Monday)/month are calendar periods in `zone`."""
    if period == "today":
        start = period_start(period_key("day", now, zone), zone)
    elif period == "week":
        today = period_key("day", now, zone)
        start = period_start(today - timedelta(days=today.weekday()), zone)
    elif period == "month":
        start = period_start(period_key("month", now, zone), zone)
    elif period in ("7d", "30d"):
        start = now - timedelta(days=int(period[:-1]))
    else:
        raise ValueError(f"unknown period {period!r}; use one of {', '.join(PERIODS)}")
    return start.astimezone(UTC), now.astimezone(UTC)


def hour_range(start: datetime, end: datetime) -> tuple[int, int]:
    """Rollup hours covering [start, end): the hour holding `start` up to the one holding `end`.

    Rollups are per UTC hour, so a zone with a half-hour offset sees its day edges rounded to the hour.
    """
    return math.floor(start.timestamp() / 3600), math.floor(end.timestamp() / 3600) + 1
