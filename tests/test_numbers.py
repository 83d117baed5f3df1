"""Numbers and times for people: money never shows as zero when it is not, times are local with the zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from picometer.numbers import count, moment, money
from picometer.ops import Switched


def test_money_reads_as_people_expect() -> None:
    cases = {12.3456: "$12.35", 1: "$1.00", 0.3328: "$0.33", 0.0315: "$0.032", 0.00042: "$0.00042", 0: "$0"}
    assert {x: money(x) for x in cases} == cases
    assert money(0.0000012) == "$0.0000012" and count(13483) == "13,483"


@given(st.floats(min_value=1e-12, max_value=1e6))
def test_money_keeps_two_significant_digits_and_never_rounds_to_zero(dollars: float) -> None:
    shown = float(money(dollars).lstrip("$").replace(",", ""))
    assert shown > 0 and abs(shown - dollars) <= dollars * 0.05 + 0.005 * (dollars >= 1)


def test_a_pause_is_told_in_the_operators_local_time() -> None:
    at = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
    berlin = ZoneInfo("Europe/Berlin")
    assert moment(at, berlin) == "2026-11-30 15:00 CET"
    done = Switched("nightly", True, at + timedelta(hours=2), "cli", at=at)
    assert (
        done.sentence(berlin)
        == "paused nightly for 2h 00m, until 2026-11-30 17:00 CET: its calls get 429 workflow_paused"
    )
    assert done.as_dict()["until"] == "2026-11-30T16:00:00.000Z", "machines get RFC 3339 UTC"
