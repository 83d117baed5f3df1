"""Wall time that never runs behind the newest record: the property budgets and the log rely on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from picometer.clock import NotBefore
from tests.clocks import ManualClock

START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)


@given(st.integers(-86_400 * 30, 86_400 * 30), st.lists(st.integers(-86_400, 86_400), max_size=30))
def test_not_before_is_the_newest_of_its_floor_and_every_reading_so_far(floor_offset: int, steps: list[int]) -> None:
    real = ManualClock(START)
    floor = START + timedelta(seconds=floor_offset)
    clock = NotBefore(real, floor)
    newest = floor
    for step in steps:
        real.wall += timedelta(seconds=step)
        newest = max(newest, real.wall)
        assert clock.now() == newest  # never behind the floor, never backwards, the real time once it is ahead


def test_a_clock_behind_the_floor_reads_the_floor_until_it_passes_it() -> None:
    real = ManualClock(START - timedelta(hours=14))
    clock = NotBefore(real, START)
    assert clock.now() == START and clock.behind_s() == 14 * 3600
    real.advance(14 * 3600 + 60)
    assert clock.now() == START + timedelta(seconds=60) and clock.behind_s() == 0
