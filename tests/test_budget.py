"""Budget arithmetic: reservations under any interleaving, calendar periods in the operator's zone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.config import config_from_dict
from picometer.local_time import period_key, period_start
from picometer.metering.budget import (
    Budget,
    Cap,
    Event,
    Hold,
    Ledger,
    Refused,
    cap_status,
    caps_from_config,
    forecast,
    refusal_message,
    to_pico,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)


def caps(
    global_day: int = 0, day: int = 0, month: int = 0, block: bool = True, alert_at: tuple[float, ...] = ()
) -> dict[str | None, tuple[Cap, Cap]]:
    return {
        None: (Cap("global", "day", global_day, block, alert_at), Cap("global", "month", 0, block, alert_at)),
        "w": (Cap("workflow:w", "day", day, block, alert_at), Cap("workflow:w", "month", month, block, alert_at)),
    }


# ---------------------------------------------------------------- reservations under concurrency

call = st.tuples(
    st.sampled_from(["w", "other"]),
    st.integers(0, 2000),  # price per input token, picodollars
    st.integers(0, 8000),  # price per output token
    st.integers(0, 300),  # worst-case input tokens
    st.integers(0, 300),  # output limit
)


@given(
    limits=st.tuples(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**7)),
    data=st.data(),
)
def test_no_interleaving_of_reserve_and_settle_passes_a_cap_or_refuses_a_call_that_fits(
    limits: tuple[int, int, int], data: st.DataObject
) -> None:
    global_day, day, month = limits
    budget = Budget(caps(global_day, day, month), BERLIN)
    # An independent ledger: (spent, reserved) per cap, by the same rules written out longhand.
    shadow = {"global/day": [0, 0], "w/day": [0, 0], "w/month": [0, 0]}
    limit_of = {"global/day": global_day, "w/day": day, "w/month": month}
    in_flight: list[tuple[Hold, int, list[str]]] = []
    for _ in range(data.draw(st.integers(1, 80))):
        if in_flight and data.draw(st.booleans()):
            hold, actual, names = in_flight.pop(data.draw(st.integers(0, len(in_flight) - 1)))
            budget.settle(hold, actual, NOW)
            for name in names:
                shadow[name][0] += actual
                shadow[name][1] -= hold.amount
        else:
            workflow, p_in, p_out, tokens_in, tokens_out = data.draw(call)
            worst = tokens_in * p_in + tokens_out * p_out
            # What the call really used: at most its worst case, a stream cut early uses less.
            actual = data.draw(st.integers(0, tokens_in)) * p_in + data.draw(st.integers(0, tokens_out)) * p_out
            names = ["global/day"] + (["w/day", "w/month"] if workflow == "w" else [])
            fits = worst == 0 or all(
                not limit_of[n] or shadow[n][0] + shadow[n][1] + worst <= limit_of[n] for n in names
            )
            held = budget.reserve(workflow, worst, NOW)
            assert isinstance(held, Hold) == fits, "refused exactly when the worst case does not fit"
            if isinstance(held, Hold):
                in_flight.append((held, actual, names))
                for n in names:
                    shadow[n][1] += worst
        for n, (spent, reserved) in shadow.items():
            if limit_of[n]:
                assert spent + reserved <= limit_of[n]
    for hold, actual, names in in_flight:
        budget.settle(hold, actual, NOW)
        for n in names:
            shadow[n][0] += actual
    for lg in budget.ledgers():
        name = lg.cap.name.replace("workflow:", "")
        if name in shadow:
            assert lg.spent == shadow[name][0] and lg.reserved == 0
            assert not lg.cap.limit or lg.spent <= lg.cap.limit, "settled spend never passes a cap"


def test_alert_only_caps_meter_and_never_refuse() -> None:
    events: list[Event] = []
    budget = Budget(caps(day=100, block=False, alert_at=(0.5, 1.0)), BERLIN, events.append)
    for _ in range(5):
        held = budget.reserve("w", 60, NOW)
        assert isinstance(held, Hold)
        budget.settle(held, 60, NOW)
    assert budget.spent(NOW, "w") == (300, 300)
    assert [(e.kind, e.threshold) for e in events] == [("threshold", 0.5), ("threshold", 1.0)]
    held = budget.reserve("w", 60, NOW)
    assert isinstance(held, Hold) and held.over is not None and held.over.name == "workflow:w/day"
    unpriced = budget.reserve("w", 0, NOW)
    assert isinstance(unpriced, Hold) and unpriced.over == held.over, "a call past the cap is marked, priced or not"


def test_a_free_call_is_never_refused_by_a_dollar_cap() -> None:
    budget = Budget(caps(day=100), BERLIN)
    held = budget.reserve("w", 100, NOW)
    assert isinstance(held, Hold)
    budget.settle(held, 150, NOW)  # the real cost ran past the estimate: the cap is now passed
    assert isinstance(budget.reserve("w", 1, NOW), Refused)
    assert isinstance(budget.reserve("w", 0, NOW), Hold)


def test_thresholds_fire_once_per_period_and_again_in_the_next() -> None:
    events: list[Event] = []
    budget = Budget(caps(day=1000, alert_at=(0.5, 0.8, 1.0)), BERLIN, events.append)
    for cost in (400, 200, 100, 250, 50):
        held = budget.reserve("w", cost, NOW)
        assert isinstance(held, Hold)
        budget.settle(held, cost, NOW)
    assert [e.threshold for e in events if e.cap.name == "workflow:w/day"] == [0.5, 0.8, 1.0]
    events_before = len(events)
    refused = budget.reserve("w", 1, NOW)
    assert isinstance(refused, Refused)
    budget.reserve("w", 1, NOW)
    assert [e.kind for e in events].count("blocked") == 1, "the first refusal is announced, not every one"
    tomorrow = NOW + timedelta(days=1)
    held = budget.reserve("w", 600, tomorrow)
    assert isinstance(held, Hold)
    budget.settle(held, 600, tomorrow)
    assert [(e.kind, e.threshold) for e in events[events_before:]] == [("blocked", None), ("threshold", 0.5)]


def test_seed_counts_this_period_from_local_midnight_and_does_not_reannounce() -> None:
    asked: list[tuple[datetime, str | None]] = []

    def spent_since(start: datetime, workflow: str | None) -> float:
        asked.append((start, workflow))
        return 6e-10 if start.day == 22 else 9e-10  # 600 picodollars today, 900 this month

    events: list[Event] = []
    budget = Budget(caps(day=1000, month=5000, alert_at=(0.5, 0.8)), BERLIN, events.append)
    budget.seed(NOW, spent_since)
    midnight = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)  # 00:00 in Berlin (CET, UTC+1)
    assert (midnight, "w") in asked and (datetime(2026, 10, 31, 23, 0, tzinfo=UTC), "w") in asked
    assert budget.spent(NOW, "w") == (600, 900)
    held = budget.reserve("w", 200, NOW)
    assert isinstance(held, Hold)
    budget.settle(held, 200, NOW)
    assert [(e.cap.name, e.threshold) for e in events] == [("workflow:w/day", 0.8)], "0.5 passed before the restart"


# ---------------------------------------------------------------- calendar periods


def spend_to_cap(budget: Budget, at: datetime) -> None:
    room = budget.ledgers()[2].cap.limit - budget.spent(at, "w")[0]
    held = budget.reserve("w", room, at)
    assert isinstance(held, Hold)
    budget.settle(held, room, at)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN).astimezone(UTC)


def test_a_reload_keeps_spend_and_calls_in_flight_and_seeds_a_new_workflow() -> None:
    events: list[Event] = []
    budget = Budget(caps(day=1000, alert_at=(0.5,)), BERLIN, events.append)
    first = budget.reserve("w", 100, NOW)
    assert isinstance(first, Hold)
    budget.settle(first, 600, NOW)  # 60%: the 0.5 threshold fired
    in_flight = budget.reserve("w", 100, NOW)
    assert isinstance(in_flight, Hold)

    new = {
        **caps(day=900, alert_at=(0.5, 0.8)),
        "new": (Cap("workflow:new", "day", 50, True), Cap("workflow:new", "month", 0, True)),
    }
    budget.reconfigure(new, NOW, lambda start, wf: 40e-12 if wf == "new" else 0.0)
    assert [e.threshold for e in events] == [0.5], "a threshold already passed is not told again"

    budget.settle(in_flight, 150, NOW)  # the call that was in flight settles into the reloaded ledger
    assert budget.spent(NOW, "w") == (750, 750)
    assert [e.threshold for e in events] == [0.5, 0.8], "a threshold of the new cap is told when crossed"
    refused = budget.reserve("w", 151, NOW)
    assert isinstance(refused, Refused) and refused.cap.limit == 900
    assert isinstance(budget.reserve("w", 150, NOW), Hold)
    assert budget.spent(NOW, "new") == (40, 40), "a workflow new to the budgets starts from its durable spend"
    assert isinstance(budget.reserve("new", 11, NOW), Refused) and isinstance(budget.reserve("new", 10, NOW), Hold)


@pytest.mark.parametrize(
    ("day", "hours"),
    [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 11, 23), 24)],
    ids=["dst-starts", "dst-ends", "plain"],
)
def test_the_day_resets_at_local_midnight_including_dst_days(day: date, hours: int) -> None:
    budget = Budget(caps(day=1000), BERLIN)
    start = local(day.year, day.month, day.day)
    spend_to_cap(budget, start + timedelta(seconds=1))
    refused = budget.reserve("w", 1, start + timedelta(seconds=1))
    assert isinstance(refused, Refused)
    assert refused.resets_at - start == timedelta(hours=hours), "the local day is this long"
    assert isinstance(budget.reserve("w", 1, refused.resets_at - timedelta(seconds=1)), Refused)
    assert isinstance(budget.reserve("w", 1, refused.resets_at), Hold)
    assert refused.resets_at.astimezone(BERLIN).hour == 0


def test_the_month_resets_on_the_first_including_the_year_end() -> None:
    budget = Budget(caps(month=1000), BERLIN)
    for last_minute, first in (
        (local(2026, 11, 30, 23, 59), local(2026, 12, 1)),
        (local(2026, 12, 31, 23, 59), local(2027, 1, 1)),
    ):
        spend_to_cap_month(budget, last_minute)
        refused = budget.reserve("w", 1, last_minute)
        assert isinstance(refused, Refused) and refused.resets_at == first
        held = budget.reserve("w", 1, first)
        assert isinstance(held, Hold)
        budget.settle(held, 0, first)


def spend_to_cap_month(budget: Budget, at: datetime) -> None:
    room = 1000 - budget.spent(at, "w")[1]
    held = budget.reserve("w", room, at)
    assert isinstance(held, Hold)
    budget.settle(held, room, at)


def test_a_wall_clock_that_jumps_back_neither_resets_nor_doubles_a_period() -> None:
    budget = Budget(caps(day=1000), BERLIN)
    yesterday = local(2026, 11, 23, 23, 50)
    held = budget.reserve("w", 700, yesterday)
    assert isinstance(held, Hold)
    budget.settle(held, 700, yesterday)
    after_midnight = local(2026, 11, 24, 0, 5)
    held = budget.reserve("w", 300, after_midnight)
    assert isinstance(held, Hold)
    budget.settle(held, 300, after_midnight)
    jumped_back = local(2026, 11, 23, 23, 55)
    assert budget.spent(jumped_back, "w")[0] == 300, "still the new day: not yesterday's 700 again"
    assert isinstance(budget.reserve("w", 701, jumped_back), Refused), "and not a fresh, empty day either"
    assert budget.spent(local(2026, 11, 24, 0, 6), "w")[0] == 300, "crossing midnight again does not reset it"


def test_a_call_reserved_before_midnight_settles_into_its_own_day() -> None:
    budget = Budget(caps(day=1000), BERLIN)
    held = budget.reserve("w", 500, local(2026, 11, 23, 23, 59, 59))
    assert isinstance(held, Hold)
    assert budget.spent(local(2026, 11, 24, 0, 0, 1), "w") == (0, 0)
    budget.settle(held, 400, local(2026, 11, 24, 0, 0, 30))
    assert budget.spent(local(2026, 11, 24, 0, 1), "w") == (0, 400), "the day it began; the month keeps it"


# ---------------------------------------------------------------- words and forecasts


def test_the_refusal_names_scope_cap_spent_and_reset() -> None:
    budget = Budget(caps(day=to_pico(1.0)), BERLIN)
    spend_to_cap(budget, NOW)
    refused = budget.reserve("w", to_pico(0.02), NOW)
    assert isinstance(refused, Refused)
    text = refusal_message(refused, NOW, BERLIN)
    assert "the daily cap of workflow 'w' is $1.00" in text and "spent $1.00" in text
    assert "2026-11-24 00:00 CET" in text and "(in 12h 00m)" in text and "[workflows.w].daily_usd" in text


def test_forecast_tells_when_the_pace_reaches_the_cap_before_the_reset() -> None:
    reset = NOW + timedelta(hours=10)
    assert forecast(500, 1000, 100, NOW, reset) == NOW + timedelta(hours=5)
    assert forecast(500, 1000, 10, NOW, reset) is None, "not before the reset"
    assert forecast(1000, 1000, 0, NOW, reset) == NOW
    status = cap_status(Cap("global", "day", 1000, True), date(2026, 11, 23), 500, 0, 100, NOW, BERLIN)
    assert status["forecast"] == "at the last hour's pace ($0.00000000010/h) the daily cap is reached at 17:00"
    assert status["cap_reached_at"] == "2026-11-23T17:00+01:00" and status["used"] == 0.5


def test_workflow_policies_inherit_the_global_ones() -> None:
    config = config_from_dict(
        {
            "budgets": {"daily_usd": 5, "on_exceed": "alert", "alert_at": [0.9]},
            "workflows": {"a": {"daily_usd": 1}, "b": {"monthly_usd": 2, "on_exceed": "block", "alert_at": [0.5]}},
        }
    )
    got = caps_from_config(config)
    assert got[None][0] == Cap("global", "day", to_pico(5), False, (0.9,))
    assert got["a"][0] == Cap("workflow:a", "day", to_pico(1), False, (0.9,))
    assert got["b"][1] == Cap("workflow:b", "month", to_pico(2), True, (0.5,))


def test_period_start_is_local_midnight() -> None:
    assert period_start(date(2026, 3, 29), BERLIN) == datetime(2026, 3, 28, 23, tzinfo=UTC)
    assert period_start(date(2026, 3, 30), BERLIN) == datetime(2026, 3, 29, 22, tzinfo=UTC)


@given(
    st.sampled_from(["day", "month"]),
    st.lists(st.integers(-3 * 86400, 70 * 86400), min_size=1, max_size=30),
    st.sampled_from([BERLIN, ZoneInfo("America/New_York"), UTC]),
)
def test_a_ledger_rolled_by_its_period_end_is_in_the_period_the_calendar_says(
    period: str, offsets: list[int], zone: ZoneInfo
) -> None:
    """Within a period a ledger only compares the time with the period's end; at any time, DST days and a
    wall clock going back included, it holds the period the calendar arithmetic gives (never an older one)."""
    quick, slow = Ledger(Cap("global", period, 100, True)), Ledger(Cap("global", period, 100, True))
    for offset in offsets:
        now = NOW + timedelta(seconds=offset)
        quick.roll_to(now, zone)
        slow.roll(period_key(period, now, zone))
        assert quick.key == slow.key
