"""Service level objectives per workflow, the way the SRE workbook measures them.

Every configured workflow has a success objective ("`slo_target` of calls succeed") and, with
`slo_latency_s`, a latency objective ("`slo_target` of calls finish within slo_latency_s"). Calls
picometer refused itself (budget, pause) are not events: they say nothing about the provider.

- Error budget: over a rolling 28 days, the share of the allowed bad events (1 - target) not yet used.
- Burn rate: the bad share in a window over the allowed share; 1 uses the budget up in exactly 28 days.
- Alerts (multi-window, so a short blip does not page and a past one stops paging): fast when the last
  hour and the last 5 minutes both burn at 14.4x (2% of the budget an hour), slow when the last 6 hours
  and 30 minutes both burn at 6x.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from picometer.alert import Kind
from picometer.metering import histogram

WINDOW_DAYS = 28
RING_MINUTES = 360  # the longest burn window: 6 hours of minutes


@dataclass(frozen=True, slots=True)
class Rule:
    kind: Kind
    long_minutes: int
    short_minutes: int
    factor: float


RULES = (Rule(Kind.SLO_BURN_FAST, 60, 5, 14.4), Rule(Kind.SLO_BURN_SLOW, 360, 30, 6.0))


@dataclass(frozen=True, slots=True)
class Events:
    total: int = 0
    bad: int = 0


def burn_rate(events: Events, target: float) -> float:
    """How many times faster than sustainable the window used the error budget (0 with no events)."""
    if events.total == 0:
        return 0.0
    return (events.bad / events.total) / (1 - target)


def budget_left(events: Events, target: float) -> float:
    """The share of the window's error budget not used yet: 1 untouched, 0 used up, below 0 overspent."""
    if events.total == 0:
        return 1.0
    return 1 - events.bad / ((1 - target) * events.total)


def events_from_rollup(row: Mapping[str, Any] | None, latency_s: float) -> tuple[Events, Events]:
    """(success, latency) events from a rollup summary row. A latency counts as slow when its histogram
    bin's midpoint is over the threshold, so a call within 4.4% of it may land on either side."""
    if row is None:
        return Events(), Events()
    total = int(row["requests"] - row["blocked"])
    success = Events(total, int(row["errors"]))
    if not latency_s:
        return success, Events()
    slow = sum(n for b, n in row["bins"].items() if histogram.bin_value(b) > latency_s * 1000)
    return success, Events(total, int(slow))


class Ring:
    """Calls, errors and slow calls per minute over the last 6 hours: fixed memory per workflow."""

    __slots__ = ("_errors", "_minute", "_slow", "_total")

    def __init__(self) -> None:
        self._minute = [-1] * RING_MINUTES
        self._total = [0] * RING_MINUTES
        self._errors = [0] * RING_MINUTES
        self._slow = [0] * RING_MINUTES

    def add(self, minute: int, error: bool, slow: bool) -> None:
        i = minute % RING_MINUTES
        if self._minute[i] != minute:
            self._minute[i], self._total[i], self._errors[i], self._slow[i] = minute, 0, 0, 0
        self._total[i] += 1
        self._errors[i] += error
        self._slow[i] += slow

    def window(self, now_minute: int, minutes: int) -> tuple[Events, Events]:
        """(success, latency) events in the last `minutes` minutes, this one included."""
        total = errors = slow = 0
        first = now_minute - minutes
        for i, m in enumerate(self._minute):
            if first < m <= now_minute:
                total += self._total[i]
                errors += self._errors[i]
                slow += self._slow[i]
        return Events(total, errors), Events(total, slow)


@dataclass(frozen=True, slots=True)
class Burn:
    rule: Rule
    sli: str  # "success" or "latency"
    long: float  # burn rate over the long window
    short: float
    events: Events  # the long window's


def slis(latency: bool) -> tuple[str, ...]:
    """The SLIs an objective has, in the order Ring.window gives their events."""
    return ("success", "latency") if latency else ("success",)


def burning(ring: Ring, now_minute: int, target: float, latency: bool) -> list[Burn]:
    """The rules each SLI breaks now; a fast burn makes the slow one for the same SLI redundant."""
    out: list[Burn] = []
    for rule in RULES:
        longs = ring.window(now_minute, rule.long_minutes)
        shorts = ring.window(now_minute, rule.short_minutes)
        for sli, long, short in zip(slis(latency), longs, shorts, strict=False):
            if any(b.sli == sli for b in out):
                continue
            long_rate, short_rate = burn_rate(long, target), burn_rate(short, target)
            if long_rate >= rule.factor and short_rate >= rule.factor:
                out.append(Burn(rule, sli, long_rate, short_rate, long))
    return out


def objective(
    name: str, target: float, latency_s: float, month: tuple[Events, Events], burns: Iterable[Burn] = ()
) -> dict[str, Any]:
    """One workflow's objectives for /-/status, report and metrics."""
    burns = list(burns)
    found: dict[str, Any] = {}
    for sli, events in zip(slis(bool(latency_s)), month, strict=False):
        found[sli] = {
            "events": events.total,
            "bad": events.bad,
            "good_ratio": None if events.total == 0 else round(1 - events.bad / events.total, 6),
            "budget_left": round(budget_left(events, target), 4),
            "burning": [str(b.rule.kind) for b in burns if b.sli == sli],
        }
    return {"workflow": name, "target": target, "latency_s": latency_s or None, "window_days": WINDOW_DAYS, **found}
