"""Anomaly maths: property tests, and a simulated fortnight of noisy traffic with a daily and weekly
rhythm that must raise nothing until a real runaway starts."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from picometer.alert import Kind
from picometer.config import config_from_dict
from picometer.record import Record
from picometer.watch import anomaly
from picometer.watch.anomaly import Activity, Expected, Recent
from picometer.watch.watchers import Watchers

# ---------------------------------------------------------------- properties

values = st.floats(min_value=0, max_value=1e4, allow_nan=False)


@given(value=values, mean=values, spread=values, z=st.floats(0, 10), min_usd=values, min_pct=st.floats(0, 500))
def test_a_spike_is_exactly_the_three_conditions(
    value: float, mean: float, spread: float, z: float, min_usd: float, min_pct: float
) -> None:
    found = anomaly.spike(value, Expected(mean, spread, 21), z, min_usd, min_pct)
    delta = value - mean
    want = (
        delta > 0
        and (spread == 0 or delta / spread >= z)
        and delta >= min_usd
        and (mean == 0 or delta / mean * 100 >= min_pct)
    )
    assert (found is not None) == want
    if found is not None:
        assert found.value == value and found.usual == mean


@given(
    level=st.floats(min_value=0.001, max_value=100),
    hours=st.integers(min_value=50, max_value=anomaly.BASELINE_HOURS),
    at=st.floats(min_value=0, max_value=1),
)
def test_a_steady_series_is_its_own_usual_and_the_spread_is_floored(level: float, hours: int, at: float) -> None:
    end = 1000
    series = {h: level for h in range(end - hours, end)}
    usual = anomaly.expected(series, end - hours, end, end + at)
    assert usual is not None
    assert math.isclose(usual.mean, level, rel_tol=1e-9)
    assert math.isclose(usual.spread, anomaly.SPREAD_FLOOR * level, rel_tol=1e-9)
    # On a steady baseline +50% is under 2 spreads, not a spike at z 3; +110% is over 3.
    assert anomaly.spike(level * 1.5, usual, 3.0, 0, 0) is None
    assert anomaly.spike(level * 2.1, usual, 3.0, 0, 0) is not None


def test_under_two_days_of_history_nothing_is_judged() -> None:
    end = 1000
    series = {h: 1.0 for h in range(end - 30, end)}
    assert anomaly.expected(series, end - 30, end, end + 0.5) is None


@given(
    st.lists(
        st.tuples(st.integers(0, 200), st.floats(0, 5), st.booleans(), st.sampled_from(["a", "b", "c"])),
        max_size=300,
    ),
    st.integers(1, 60),
)
def test_recent_sums_are_the_sums_of_what_came_in_the_window(
    calls: list[tuple[int, float, bool, str]], minutes: int
) -> None:
    calls.sort(key=lambda c: c[0])
    recent = Recent()
    for minute, cost, error, prompt in calls:
        recent.add(minute, cost=cost, error=error, retries=1, model=prompt, prompt=prompt)
    now = calls[-1][0] if calls else 0
    # The window keeps the last 60 minute buckets that had calls; a brute-force sum over the same.
    kept = [c for c in calls if c[0] > now - anomaly.WINDOW_MINUTES]
    inside = [c for c in kept if now - minutes < c[0] <= now]
    got = recent.last(now, minutes)
    assert got.requests == len(inside)
    assert got.errors == sum(c[2] for c in inside)
    assert math.isclose(got.cost, sum(c[1] for c in inside), abs_tol=1e-9)
    counts: dict[str, int] = defaultdict(int)
    for c in inside:
        counts[c[3]] += 1
    assert dict(got.prompts) == dict(counts)
    storm = anomaly.duplicate_storm(got.prompts, 5)
    assert (storm is not None) == (max(counts.values(), default=0) >= 5)


@given(st.integers(0, 500), st.integers(0, 500), st.floats(1, 50))
def test_a_runaway_needs_both_the_factor_and_a_floor(requests: int, usual_per_hour: int, factor: float) -> None:
    act = Activity(minutes=anomaly.RUNAWAY_MINUTES, requests=requests)
    found = anomaly.runaway(act, 0.0, usual_per_hour, factor, min_usd=1.0)
    usual = usual_per_hour * anomaly.RUNAWAY_MINUTES / 60
    assert (found is not None) == (requests >= anomaly.RUNAWAY_MIN_REQUESTS and requests >= factor * usual)


# ---------------------------------------------------------------- a simulated fortnight

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
PRICE = {"gpt-4o-mini": 0.0006, "gpt-4o": 0.01}  # dollars per typical call of each workflow's size


def _rate(workflow: str, moment: datetime, day_factor: float) -> float:
    """Calls per hour: a daily rhythm (busy afternoons, quiet nights) and quiet weekends."""
    base = {"digest": 40.0, "support": 90.0, "nightly": 4.0}[workflow]
    hour = moment.hour + moment.minute / 60
    rhythm = 1 + 0.8 * math.sin((hour - 9) / 24 * 2 * math.pi)
    weekend = 0.4 if moment.weekday() >= 5 else 1.0
    return base * rhythm * weekend * day_factor


class Fortnight:
    """Calls drawn minute by minute; rows aggregated per hour the way the rollups hold them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.rows: dict[tuple[int, str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
        self.day_factor: dict[int, float] = {}

    def calls(self, workflow: str, moment: datetime, model: str, rate_x: float = 1.0) -> list[Record]:
        day = moment.toordinal()
        factor = self.day_factor.setdefault(day, self.rng.lognormvariate(0, 0.15))
        n = _poisson(self.rng, _rate(workflow, moment, factor) * rate_x / 60)
        out = []
        for _ in range(n):
            size = self.rng.lognormvariate(0, 0.6)
            cost = PRICE[model] * size * (8 if workflow == "support" else 1)
            tokens = int(1500 * size)
            rec = Record(
                ts=moment.isoformat(),
                request_id="r",
                workflow=workflow,
                provider="openai",
                model=model,
                cost_usd=cost,
                input_tokens=tokens,
                attempts=1,
                prompt_hash=f"{self.rng.getrandbits(64):016x}",
            )
            row = self.rows[(int(moment.timestamp()) // 3600, workflow, model)]
            row[0] += 1
            row[2] += tokens
            row[4] += cost
            out.append(rec)
        return out

    def history(self, end_hour: int) -> list[tuple[int, str, str, int, int, int, int, float]]:
        return [
            (h, w, m, int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4])
            for (h, w, m), r in self.rows.items()
            if end_hour - anomaly.BASELINE_HOURS <= h < end_hour
        ]


def _poisson(rng: random.Random, lam: float) -> int:
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def _run(seed: int, days: int, runaway_at: datetime | None = None) -> list[tuple[datetime, Kind, str]]:
    config = config_from_dict({"alerts": {"spike_min_usd": 0.5}, "workflows": {"digest": {"owner": "ana"}}})
    sim = Fortnight(seed)
    watchers = Watchers(config, UTC, START)
    raised = []
    moment = START
    while moment < START + timedelta(days=days):
        if moment.minute == 0:
            end = int(moment.timestamp()) // 3600
            watchers.baselines = anomaly.baselines(sim.history(end), end)
        for workflow in ("digest", "support", "nightly"):
            model, rate_x = "gpt-4o-mini", 1.0
            if runaway_at is not None and workflow == "digest" and moment >= runaway_at:
                model, rate_x = "gpt-4o", 3.0  # the route moved to a dear model and the cron fires 3x as often
            for rec in sim.calls(workflow, moment, model, rate_x):
                watchers.observe(rec, moment)
        if moment >= START + timedelta(days=7) and moment.minute % 5 == 0:
            raised += [(moment, a.kind, a.message) for a in watchers.check(moment) if a.kind != Kind.DUPLICATE_STORM]
        moment += timedelta(minutes=1)
    return raised


def test_a_normal_noisy_fortnight_raises_no_spike_or_runaway() -> None:
    for seed in (1, 2, 3):
        raised = _run(seed, days=14)
        assert raised == [], f"seed {seed}: false alarms {raised[:3]}"


def test_a_route_moving_to_a_dear_model_at_triple_rate_is_caught_within_minutes_with_its_cause() -> None:
    start = START + timedelta(days=9, hours=14, minutes=2)
    raised = _run(3, days=10, runaway_at=start)
    assert raised, "the runaway went unnoticed"
    first_at, kind, message = raised[0]
    assert kind in (Kind.RUNAWAY, Kind.SPIKE)
    assert first_at - start <= timedelta(minutes=10)
    assert "Workflow digest (owner ana)" in message
    assert "gpt-4o share went from 0% to 100% at 14:02" in message
    assert "/pause digest 1h" in message
