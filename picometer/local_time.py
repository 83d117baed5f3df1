"""Calendar arithmetic in the operator's time zone, in one place: budget days and months, report periods,
ISO weeks for the CSV, and the UTC hours and quarter hours the rollups count in. Pure.

Periods are built from local dates (midnight of the first day, then to UTC), so DST days are 23 or 25
hours long, as the wall clock says."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo


def period_key(period: str, now: datetime, zone: tzinfo) -> date:
    """The period holding `now`, named by its first local day."""
    local = now.astimezone(zone).date()
    return local if period == "day" else local.replace(day=1)


def period_start(key: date, zone: tzinfo) -> datetime:
    """Local midnight of the period's first day, in UTC (built from the date, so DST days are right)."""
    return datetime(key.year, key.month, key.day, tzinfo=zone).astimezone(UTC)


def next_period(period: str, key: date) -> date:
    if period == "day":
        return key + timedelta(days=1)
    return date(key.year + key.month // 12, key.month % 12 + 1, 1)


def resets_at(period: str, key: date, zone: tzinfo) -> datetime:
    return period_start(next_period(period, key), zone)


def parse_week(text: str) -> date:
    """The Monday of an ISO week written like 2026-W47."""
    match = re.fullmatch(r"(\d{4})-W(\d{2})", text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not an ISO week: write it like 2026-W47")
    try:
        return date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise ValueError(f"{text!r}: year {match[1]} has no week {match[2]}") from None


def week_label(monday: date) -> str:
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def last_full_week(now: datetime, zone: tzinfo) -> date:
    """The Monday of the last ISO week that has ended, in `zone`."""
    today = period_key("day", now, zone)
    return today - timedelta(days=today.weekday() + 7)


def hour_of(ts: str) -> int:
    """The UTC hour (hours since the epoch) of a record's RFC 3339 timestamp."""
    return int(datetime.fromisoformat(ts).timestamp()) // 3600


def quarter_of(moment: datetime) -> int:
    return int(moment.timestamp()) // 900


REPORT_PERIODS = ("today", "week", "month", "7d", "30d")


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
        raise ValueError(f"unknown period {period!r}; use one of {', '.join(REPORT_PERIODS)}")
    return start.astimezone(UTC), now.astimezone(UTC)


def hour_range(start: datetime, end: datetime) -> tuple[int, int]:
    """Rollup hours covering [start, end): the hour holding `start` up to the one holding `end`.

    Rollups are per UTC hour, so a zone with a half-hour offset sees its day edges rounded to the hour.
    """
    return math.floor(start.timestamp() / 3600), math.floor(end.timestamp() / 3600) + 1
