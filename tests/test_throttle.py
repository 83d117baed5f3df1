"""Log lines under floods: a broken disk or a buggy provider fails every call, and the log says so once a
minute with a count, not thousands of times."""

from __future__ import annotations

from typing import Any

import structlog
from structlog.testing import capture_logs

from picometer.record import Record, Recorder
from picometer.throttle import Throttled
from tests.clocks import ManualClock


def test_one_line_per_reason_per_interval_then_the_count_held_back() -> None:
    clock = ManualClock()
    throttled = Throttled(structlog.get_logger("t"), 60, clock.monotonic)
    with capture_logs() as lines:
        for _ in range(500):
            throttled.warning("disk trouble", path="/x")
            throttled.error("other trouble")
        clock.advance(61)
        throttled.warning("disk trouble", path="/x")
    assert [(line["event"], line.get("held_back")) for line in lines] == [
        ("disk trouble", None),
        ("other trouble", None),
        ("disk trouble", 499),
    ]


class BrokenLog:
    def write(self, record: Record) -> Any:
        raise OSError("I/O error")


class Rollups:
    def add(self, record: Record, position: Any) -> None:
        pass


def test_a_failing_usage_log_is_logged_once_not_per_record() -> None:
    recorder = Recorder(BrokenLog(), Rollups())
    with capture_logs() as lines:
        for i in range(1000):
            recorder(Record(ts="2026-11-30T10:00:00.000Z", request_id=str(i)))
    assert [line["event"] for line in lines] == ["usage log write failed"]
