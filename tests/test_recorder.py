"""The Recorder writes each record to the usage log at once and folds it into the rollups and the observers only
when a call's task ends (alone, its own: its reply is out); a call still open is folded by the next drain."""

from __future__ import annotations

import asyncio
from typing import Any

from picometer.record import Record, Recorder


class Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, record: Record) -> Any:
        self.lines.append(record.request_id)
        return len(self.lines)


class Folded:
    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, record: Record, position: Any) -> None:
        self.ids.append(record.request_id)


def rec(request_id: str) -> Record:
    return Record(ts="2026-12-01T10:00:00.000Z", request_id=request_id)


def test_a_record_is_written_at_once_and_folded_when_its_call_has_ended() -> None:
    log, folded, seen = Log(), Folded(), []
    recorder = Recorder(log, folded, observe=lambda r: seen.append(r.request_id))

    async def call(request_id: str, after: asyncio.Event) -> None:
        recorder(rec(request_id))
        assert log.lines[-1] == request_id, "in the log before the reply's last bytes"
        await after.wait()  # the rest of the reply: the loop turns meanwhile
        assert request_id not in folded.ids, "not folded while its call is still under way"

    async def main() -> None:
        done = asyncio.Event()
        task = asyncio.ensure_future(call("a", done))
        for _ in range(5):
            await asyncio.sleep(0)
        assert folded.ids == []
        done.set()
        await task
        await asyncio.sleep(0)  # the task's done callbacks run on the loop's next turn
        assert folded.ids == ["a"] and seen == ["a"]

    asyncio.run(main())


def test_a_call_left_open_is_folded_by_a_drain_and_never_twice() -> None:
    log, folded = Log(), Folded()
    recorder = Recorder(log, folded)

    async def main() -> None:
        hung = asyncio.Event()

        async def open_call() -> None:
            recorder(rec("open"))
            await hung.wait()

        async def quick_call() -> None:
            recorder(rec("quick"))

        task = asyncio.ensure_future(open_call())
        await asyncio.sleep(0)
        recorder.drain()  # the daemon's tick
        assert folded.ids == ["open"]
        await asyncio.ensure_future(quick_call())
        await asyncio.sleep(0)
        assert folded.ids == ["open", "quick"]
        hung.set()
        await task
        await asyncio.sleep(0)
        assert folded.ids == ["open", "quick"], "each record folded once"

    asyncio.run(main())


def test_without_a_loop_a_record_is_folded_at_once() -> None:
    log, folded = Log(), Folded()
    Recorder(log, folded)(rec("cli"))
    assert folded.ids == ["cli"]
