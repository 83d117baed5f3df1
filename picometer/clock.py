"""One injectable clock, so tests can travel in time."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, tzinfo
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds from an arbitrary start; never goes backwards."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    monotonic = staticmethod(time.monotonic)  # read several times a call: the C function, no frame of ours


class NotBefore:
    """Wall time that never runs behind the newest record seen, nor backwards.

    A Pi without a real-time clock boots with a stale time and jumps forward once NTP answers; a clock
    stepped back does the same the other way. Until the real clock passes the newest moment seen, that
    moment is "now": records keep their order, and no budget period starts afresh (or reopens) early."""

    def __init__(self, inner: Clock, floor: datetime | None = None) -> None:
        self.inner = inner
        self.floor = floor or inner.now()
        self.monotonic: Callable[[], float] = inner.monotonic  # never held back: the inner clock's own

    def behind_s(self) -> float:
        """How far the real clock runs behind the floor (0 when it does not)."""
        return max((self.floor - self.inner.now()).total_seconds(), 0.0)

    def now(self) -> datetime:
        now = self.inner.now()
        if now > self.floor:
            self.floor = now
        return self.floor


def resolve_zone(name: str) -> tzinfo:
    """An IANA zone, or for "local" the system's own zone with its DST rules (not a fixed offset)."""
    if name != "local":
        return ZoneInfo(name)
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        try:
            return ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC
