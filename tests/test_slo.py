"""Objectives: burn rates and error budgets (pure maths, properties), burn alerts with an injected clock,
the 28-day budget from a real rollups file, and the daemon's /-/status and report showing them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.alert import Kind
from picometer.config import config_from_dict
from picometer.record import Record
from picometer.reports.report import build, objectives, render
from picometer.store.rollups import Rollups
from picometer.watch import slo
from picometer.watch.commands import Commands
from picometer.watch.watchers import Watchers
from tests.clocks import ManualClock
from tests.servers import GatewayServer, SimServer, gateway_config

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
CONFIG = config_from_dict({"workflows": {"summarize": {"owner": "ana", "slo_target": 0.99, "slo_latency_s": 300}}})


def record(at: datetime, *, status: str = "ok", latency_ms: float = 800.0, workflow: str = "summarize") -> Record:
    return Record(
        ts=at.isoformat(), request_id="r", workflow=workflow, provider="openai", model="gpt-4o-mini",
        status=status, latency_ms=latency_ms, cost_usd=0.0001, attempts=1,
    )  # fmt: skip


# ---------------------------------------------------------------- maths


@given(st.integers(1, 10_000), st.data(), st.sampled_from([0.9, 0.99, 0.995, 0.999]))
def test_budget_left_is_one_minus_the_burn_rate_and_a_burn_of_1_spends_it_exactly(
    total: int, data: st.DataObject, target: float
) -> None:
    bad = data.draw(st.integers(0, total))
    events = slo.Events(total, bad)
    assert slo.budget_left(events, target) == pytest.approx(1 - slo.burn_rate(events, target))
    exact = slo.Events(10_000, round(10_000 * (1 - target)))
    assert slo.burn_rate(exact, target) == pytest.approx(1.0)
    assert slo.budget_left(exact, target) == pytest.approx(0.0, abs=1e-9)


@given(st.lists(st.tuples(st.integers(0, 900), st.booleans(), st.booleans()), max_size=300), st.integers(1, 360))
def test_the_minute_ring_counts_a_window_like_a_brute_force_count(
    calls: list[tuple[int, bool, bool]], minutes: int
) -> None:
    ring = slo.Ring()
    calls.sort()
    for minute, error, slow in calls:
        ring.add(minute, error, slow)
    now = calls[-1][0] if calls else 0
    inside = [(e, s) for m, e, s in calls if now - minutes < m <= now]
    success, latency = ring.window(now, minutes)
    assert success == slo.Events(len(inside), sum(e for e, _ in inside))
    assert latency == slo.Events(len(inside), sum(s for _, s in inside))


# ---------------------------------------------------------------- burn alerts


def traffic(watchers: Watchers, minutes: range, calls: int, call: Callable[[datetime, int], Record]) -> datetime:
    """`calls` calls in each of these minutes after START, the i-th made by call(at, i); the last minute's time."""
    at = START
    for minute in minutes:
        at = START + timedelta(minutes=minute)
        for i in range(calls):
            watchers.observe(call(at, i), at)
    return at


def ten_minutes(error_every: int, calls_per_minute: int = 60, offset: int = 0) -> list[Kind]:
    """A workflow's first 10 minutes of traffic, one call in `error_every` failing; the SLO alerts raised."""
    watchers = Watchers(CONFIG, UTC, START)
    clock = ManualClock(START)
    raised: list[Kind] = []
    n = offset
    for _ in range(10):
        for _ in range(calls_per_minute):
            n += 1
            status = "error" if n % error_every == 0 else "ok"
            watchers.observe(record(clock.now(), status=status), clock.now())
        clock.advance(60)
        raised += [a.kind for a in watchers.check(clock.now()) if a.kind in (Kind.SLO_BURN_FAST, Kind.SLO_BURN_SLOW)]
    return raised


def test_a_20_percent_error_rate_for_10_minutes_on_a_99_percent_objective_fires_the_fast_burn_alert() -> None:
    raised = ten_minutes(error_every=5)
    assert raised == [Kind.SLO_BURN_FAST] * 10, "from the first minute on, every check"
    assert Kind.SLO_BURN_SLOW not in raised, "a fast burn makes the slow alert for the same SLI redundant"


def test_half_a_percent_of_errors_uses_the_budget_slower_than_sustainable_and_fires_nothing() -> None:
    for offset in range(0, 200, 20):  # wherever the errors fall in the minutes
        assert ten_minutes(error_every=200, offset=offset) == []
    assert ten_minutes(error_every=20, calls_per_minute=2) == [], "one failed call of 20 does not page"


def test_the_fast_burn_alert_names_the_workflow_the_numbers_and_what_to_do() -> None:
    watchers = Watchers(CONFIG, UTC, START)
    at = traffic(watchers, range(10), 60, lambda t, i: record(t, status="error" if i % 5 == 0 else "ok"))
    (alert,) = [a for a in watchers.check(at) if a.kind == Kind.SLO_BURN_FAST]
    assert alert.scope == "workflow:summarize" and alert.key == "slo_burn_fast:success:workflow:summarize"
    assert "Workflow summarize (owner ana) is using its error budget 20.0× too fast" in alert.message
    assert "20.0% of calls failed in the last 1 h (120 of 600" in alert.message
    assert "99% of calls succeed" in alert.message and "lasts 1.4 days" in alert.message
    assert "/pause summarize 1h" in alert.message


def test_slow_calls_burn_the_latency_objective_and_a_blip_an_hour_ago_no_longer_does() -> None:
    watchers = Watchers(CONFIG, UTC, START)
    at = traffic(watchers, range(30), 20, lambda t, i: record(t, latency_ms=400_000 if i < 4 else 900))
    kinds = {(a.kind, a.key.split(":")[1]) for a in watchers.check(at)}
    assert kinds == {(Kind.SLO_BURN_FAST, "latency")}
    # Then an hour of good calls: the long window still remembers, the short one says it has passed.
    at = traffic(watchers, range(30, 100), 1, lambda t, _: record(t))
    assert [a for a in watchers.check(at) if a.kind in (Kind.SLO_BURN_FAST, Kind.SLO_BURN_SLOW)] == []


def test_an_unconfigured_workflow_has_no_objective() -> None:
    watchers = Watchers(CONFIG, UTC, START)
    for _ in range(100):
        watchers.observe(record(START, status="error", workflow="adhoc"), START)
    assert watchers.burns("adhoc", START) == []


# ---------------------------------------------------------------- the 28-day budget


def test_the_28_day_error_budget_left_matches_a_hand_computation(tmp_path: Path) -> None:
    rollups = Rollups(tmp_path / "rollups.db")
    now = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
    first = now - timedelta(days=27, hours=23)  # inside the 28 days
    for i in range(20_000):
        at = first + timedelta(seconds=i * 120)
        status = "error" if i < 150 else "ok"
        latency = 400_000.0 if i % 400 == 0 else 2_000.0  # 50 slow calls
        rollups.add(record(at, status=status, latency_ms=latency), None)
    for _ in range(500):  # refused by picometer: not events; and a month-old outage outside the window
        rollups.add(record(now - timedelta(minutes=5), status="blocked", latency_ms=0.2), None)
        rollups.add(record(now - timedelta(days=29), status="error"), None)
    rollups.flush()
    (o,) = objectives(rollups, CONFIG.workflows, now)
    # success: 150 bad of 20 000, allowed 1% = 200: 25% of the budget left
    assert o["success"]["events"] == 20_000 and o["success"]["bad"] == 150
    assert o["success"]["budget_left"] == pytest.approx(1 - 150 / 200)
    assert o["success"]["good_ratio"] == pytest.approx(1 - 150 / 20_000)
    # latency within 300 s: 50 bad of 20 000 (the errors were fast): 75% left
    assert o["latency"]["bad"] == 50 and o["latency"]["budget_left"] == pytest.approx(1 - 50 / 200)
    text = render(build(rollups, "today", "workflow", now, UTC, (), CONFIG.workflows))
    assert "summarize               99.00% succeed: 99.250% of 20000 calls, 25% of the error budget left" in text
    assert "99.00% within 300 s: 99.750% of 20000 calls, 75% of the error budget left" in text
    rollups.close()


def test_the_daemon_shows_objectives_and_raises_a_fast_burn_from_real_calls(sim: SimServer, tmp_path: Path) -> None:
    clock = ManualClock(datetime.now(UTC))
    raw = gateway_config(sim.url, tmp_path, workflows={"summarize": {"slo_target": 0.99}})
    with GatewayServer(raw, clock=clock) as server:
        for i in range(20):
            headers = {"x-sim-fault": "http400"} if i % 5 == 0 else {}
            answer = httpx.post(
                f"{server.url}/w/summarize/openai/chat/completions",
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]},
                headers=headers,
                trust_env=False,
            )
            assert answer.status_code == (400 if i % 5 == 0 else 200)
        server.records(wait_for=20)
        server.daemon.rollups.flush()
        server.daemon.watch()
        status = httpx.get(f"{server.url}/-/status", trust_env=False).json()
        (reply,) = asyncio.run(Commands(server.daemon.ops).answer("/status", by="test"))
    (o,) = status["objectives"]
    assert o["success"]["events"] == 20 and o["success"]["bad"] == 4
    assert o["success"]["budget_left"] == pytest.approx(1 - 4 / 0.2)
    assert o["success"]["burning"] == ["slo_burn_fast"]
    assert [a["kind"] for a in status["alerts"] if a["kind"].startswith("slo")] == ["slo_burn_fast"]
    objective = "summarize               99.00% succeed: 80.000% of 20 calls, error budget overspent (2000% used)"
    assert f"{objective}, BURNING (slo_burn_fast)" in reply, "the lines `picometer status` prints"
