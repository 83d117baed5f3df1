"""Report periods in the operator's time zone, as UTC hour ranges for the rollups. Pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo

PERIODS = ("today", "week", "month", "7d", "30d")


def local_midnight(day: datetime, zone: tzinfo) -> datetime:
    """00:00 local on `day`'s date, as an aware datetime (DST-safe: built from the date, not by subtracting)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def period_bounds(period: str, now: datetime, zone: tzinfo) -> tuple[datetime, datetime]:
    """[start, end) in UTC. today/week (ISO, from Monday)/month are calendar periods in `zone`."""
    local = now.astimezone(zone)
    if period == "today":
        start = local_midnight(local, zone)
    elif period == "week":
        start = local_midnight(local - timedelta(days=local.weekday()), zone)
    elif period == "month":
        start = datetime(local.year, local.month, 1, tzinfo=zone)
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
