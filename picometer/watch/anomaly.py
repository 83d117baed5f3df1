"""Anomaly maths over plain numbers: is this workflow's spend far above its own usual, and why. Pure.

A workflow's "usual" is its hourly cost over the last 7 days at the same time of day (±1 hour), so a
daily rhythm (busy afternoons, quiet nights) is not mistaken for a spike. Three tests must all pass
before anything is called a spike: a z-score, an absolute dollar movement and a relative one.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

BASELINE_HOURS = 7 * 24
MIN_SAMPLES = 6  # same-time-of-day samples needed before a baseline is trusted (two days)
SPREAD_FLOOR = 0.35  # day-to-day noise: a steady baseline still allows about +100% (z 3) before a spike
WINDOW_MINUTES = 60  # the recent activity kept per workflow, minute by minute
RUNAWAY_MINUTES = 10
STORM_MINUTES = 5
RUNAWAY_MIN_REQUESTS = 60  # a request-rate runaway needs at least this many calls in its window


# ---------------------------------------------------------------- recent activity, per minute


@dataclass(slots=True)
class Tally:
    """Counts of calls: one minute's, or the sum over several."""

    requests: int = 0
    errors: int = 0
    retries: int = 0
    cost: float = 0.0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    models: dict[str, int] = field(default_factory=dict)
    prompts: dict[str, int] = field(default_factory=dict)
    versions: dict[str, int] = field(default_factory=dict)

    def absorb(self, other: Tally) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.retries += other.retries
        self.cost += other.cost
        self.input_tokens += other.input_tokens
        self.cached_input_tokens += other.cached_input_tokens
        for mine, theirs in (
            (self.models, other.models),
            (self.prompts, other.prompts),
            (self.versions, other.versions),
        ):
            for name, n in theirs.items():
                mine[name] = mine.get(name, 0) + n


@dataclass(slots=True)
class Minute(Tally):
    minute: int = 0  # minutes since the epoch


@dataclass(slots=True)
class Activity(Tally):
    """Sums over some recent minutes."""

    minutes: int = 0
    first_seen: dict[str, int] = field(default_factory=dict)  # model -> first minute in the window
    calls_before: dict[str, int] = field(default_factory=dict)  # model -> calls in the window before then


class Recent:
    """The last hour of one workflow or provider in minute buckets: fixed memory whatever the traffic."""

    __slots__ = ("_minutes",)

    def __init__(self) -> None:
        self._minutes: deque[Minute] = deque(maxlen=WINDOW_MINUTES)

    def add(
        self,
        minute: int,
        *,
        cost: float,
        error: bool,
        retries: int,
        input_tokens: int = 0,
        cached_input_tokens: int = 0,
        model: str = "",
        prompt: str | None = None,
        version: str | None = None,
    ) -> None:
        # A record stamped before the newest minute (the clock stepped back) counts in the newest.
        if not self._minutes or self._minutes[-1].minute < minute:
            self._minutes.append(Minute(minute=minute))
        m = self._minutes[-1]
        m.requests += 1
        m.errors += error
        m.retries += retries
        m.cost += cost
        m.input_tokens += input_tokens
        m.cached_input_tokens += cached_input_tokens
        if model:
            m.models[model] = m.models.get(model, 0) + 1
        if prompt:
            m.prompts[prompt] = m.prompts.get(prompt, 0) + 1
        if version:
            m.versions[version] = m.versions.get(version, 0) + 1

    def last(self, now_minute: int, minutes: int) -> Activity:
        """Sums over the minutes (now_minute - minutes, now_minute]."""
        total = Activity(minutes=minutes)
        for m in self._minutes:
            if not now_minute - minutes < m.minute <= now_minute:
                continue
            for name in m.models:
                if name not in total.first_seen:
                    total.first_seen[name], total.calls_before[name] = m.minute, total.requests
            total.absorb(m)
        return total

    def idle(self, now_minute: int) -> bool:
        """Nothing within the window: the watchers forget it."""
        return not self._minutes or self._minutes[-1].minute <= now_minute - WINDOW_MINUTES


# ---------------------------------------------------------------- the baseline


@dataclass(frozen=True, slots=True)
class Baseline:
    """One workflow's last 7 days from the rollups, hour by hour (UTC hours since the epoch)."""

    first_hour: int  # the first hour with any call (zeros before it are not history)
    end_hour: int  # exclusive: the hour being watched is not part of its own baseline
    cost: Mapping[int, float]
    requests: Mapping[int, float]  # float, so the same `expected()` reads it as it reads cost
    models: Mapping[str, int]
    input_tokens: int = 0
    cached_input_tokens: int = 0
    retries: int = 0

    @property
    def total_requests(self) -> int:
        return round(sum(self.requests.values()))


@dataclass(frozen=True, slots=True)
class Expected:
    mean: float
    spread: float  # standard deviation, floored (see SPREAD_FLOOR)
    samples: int


def baselines(rows: Iterable[tuple[int, str, str, int, int, int, int, float]], end_hour: int) -> dict[str, Baseline]:
    """Rows of (hour, workflow, model, requests, retries, input_tokens, cached_input_tokens, cost)."""
    cost: dict[str, dict[int, float]] = {}
    calls: dict[str, dict[int, float]] = {}
    models: dict[str, dict[str, int]] = {}
    sums: dict[str, list[int]] = {}
    for hour, workflow, model, requests, retries, input_tokens, cached, dollars in rows:
        if hour >= end_hour:
            continue
        c, n, m = cost.setdefault(workflow, {}), calls.setdefault(workflow, {}), models.setdefault(workflow, {})
        c[hour] = c.get(hour, 0.0) + dollars
        n[hour] = n.get(hour, 0.0) + requests
        m[model] = m.get(model, 0) + requests
        s = sums.setdefault(workflow, [0, 0, 0])
        s[0], s[1], s[2] = s[0] + input_tokens, s[1] + cached, s[2] + retries
    return {
        w: Baseline(min(cost[w]), end_hour, cost[w], calls[w], models[w], sums[w][0], sums[w][1], sums[w][2])
        for w in cost
    }


def expected(
    series: Mapping[int, float],
    first_hour: int,
    end_hour: int,
    at_hour: float,
    weekend: Callable[[float], bool] = lambda hour: False,
) -> Expected | None:
    """The usual value of an hourly series for the hour ending at `at_hour` (fractional, UTC).

    Samples are the same time of day on each earlier day of the baseline, and an hour either side;
    a rolling hour that straddles two clock hours is read as the weighted mix of both. A weekday is
    compared with weekdays and a weekend day with weekend days when there are enough of them.
    """
    samples: list[tuple[bool, float]] = []
    for day in range(1, BASELINE_HOURS // 24 + 1):
        for shift in (-1, 0, 1):
            end = at_hour - 24 * day + shift
            start = end - 1
            if math.floor(start) < first_hour or math.ceil(end) > end_hour:
                continue
            samples.append((weekend(end), _hour_mix(series, start)))
    alike = [v for w, v in samples if w == weekend(at_hour)]
    values = alike if len(alike) >= MIN_SAMPLES else [v for _, v in samples]
    return _usual(values)


def _usual(samples: list[float]) -> Expected | None:
    if len(samples) < MIN_SAMPLES:
        return None
    mean = sum(samples) / len(samples)
    var = sum((s - mean) ** 2 for s in samples) / (len(samples) - 1)
    return Expected(mean, max(math.sqrt(var), SPREAD_FLOOR * mean), len(samples))


def _hour_mix(series: Mapping[int, float], start: float) -> float:
    """The value over [start, start + 1) when start is not on the hour."""
    h = math.floor(start)
    f = start - h
    return (1 - f) * series.get(h, 0.0) + f * series.get(h + 1, 0.0)


# ---------------------------------------------------------------- the tests


@dataclass(frozen=True, slots=True)
class Spike:
    value: float
    usual: float
    zscore: float
    pct: float  # inf when the usual is zero


def spike(value: float, usual: Expected, zscore: float, min_usd: float, min_pct: float) -> Spike | None:
    """Far above usual on all three counts: z-score, dollars and percent."""
    delta = value - usual.mean
    if delta <= 0:
        return None
    z = delta / usual.spread if usual.spread > 0 else math.inf
    pct = delta / usual.mean * 100 if usual.mean > 0 else math.inf
    if z >= zscore and delta >= min_usd and pct >= min_pct:
        return Spike(value, usual.mean, z, pct)
    return None


@dataclass(frozen=True, slots=True)
class Runaway:
    what: str  # "spend" or "requests"
    value: float
    usual: float  # for the same number of minutes
    factor: float


def runaway(
    recent: Activity,
    usual_cost_per_hour: float,
    usual_requests_per_hour: float,
    factor: float,
    min_usd: float,
) -> Runaway | None:
    """Minutes, not hours: spend or call rate `factor` times the usual for the same stretch of time.
    `min_usd` is per hour (like a spike's), so 10 minutes need a sixth of it."""
    share = recent.minutes / 60
    usual_cost, usual_requests = usual_cost_per_hour * share, usual_requests_per_hour * share
    if recent.cost >= min_usd * share and recent.cost >= factor * usual_cost:
        return Runaway("spend", recent.cost, usual_cost, _ratio(recent.cost, usual_cost))
    if recent.requests >= RUNAWAY_MIN_REQUESTS and recent.requests >= factor * usual_requests:
        return Runaway("requests", recent.requests, usual_requests, _ratio(recent.requests, usual_requests))
    return None


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def duplicate_storm(prompts: Mapping[str, int], threshold: int) -> tuple[str, int] | None:
    """The most repeated prompt, if it came `threshold` times or more."""
    if not prompts:
        return None
    top = max(prompts.items(), key=lambda kv: (kv[1], kv[0]))
    return top if top[1] >= threshold else None


def error_rate(recent: Activity, threshold_pct: float, min_requests: int = 10) -> float | None:
    """The share of failed calls in percent, if at least `threshold_pct` over enough calls."""
    if recent.requests < min_requests:
        return None
    pct = recent.errors / recent.requests * 100
    return pct if pct >= threshold_pct else None


# ---------------------------------------------------------------- the likely cause


def likely_causes(
    base: Baseline,
    now: Activity,
    usual_calls_per_hour: float,
    at: Callable[[int], str],
    new_versions: Iterable[tuple[str, int]] = (),
) -> list[str]:
    """What changed between the baseline and now, most telling first; `at` formats a minute as HH:MM."""
    causes: list[str] = []
    causes += [f"a new prompt_version {version!r} appeared at {at(minute)}" for version, minute in new_versions]
    base_n, now_n = base.total_requests, now.requests
    if now_n and base_n:
        for model, count in sorted(now.models.items(), key=lambda kv: -kv[1]):
            before, after = base.models.get(model, 0) / base_n, count / now_n
            if before == 0 and model in now.first_seen:
                # A model new to this workflow: its share since it first appeared, and when.
                after = count / max(now_n - now.calls_before.get(model, 0), 1)
                if after < 0.25:
                    continue
                causes.append(
                    f"the model mix changed: {model} share went from 0% to {after:.0%} at {at(now.first_seen[model])}"
                )
                break
            if after - before >= 0.25:
                causes.append(f"the model mix changed: {model} share went from {before:.0%} to {after:.0%}")
                break
        per_now, per_base = now.input_tokens / now_n, base.input_tokens / base_n
        if per_base and per_now >= 1.5 * per_base:
            causes.append(f"input tokens per call went from {per_base:,.0f} to {per_now:,.0f}")
        cache_before = base.cached_input_tokens / base.input_tokens if base.input_tokens else 0.0
        cache_now = now.cached_input_tokens / now.input_tokens if now.input_tokens else 0.0
        if cache_before >= 0.2 and cache_now <= cache_before / 2:
            causes.append(f"the share of input read from cache dropped from {cache_before:.0%} to {cache_now:.0%}")
        retry_before, retry_now = base.retries / base_n, now.retries / now_n
        if retry_now >= 0.2 and retry_now >= 2 * retry_before:
            causes.append(f"retries rose to {retry_now:.1f} per call (usually {retry_before:.1f})")
    rate_now = now_n * 60 / now.minutes
    if now_n and rate_now >= 2 * max(usual_calls_per_hour, 1e-9):
        causes.append(f"calls per hour rose to {rate_now:,.0f} (usually {usual_calls_per_hour:,.0f} at this time)")
    return causes
