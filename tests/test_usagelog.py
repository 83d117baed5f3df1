"""The usage log on a small or full disk: the cap holds during a flood, nothing crashes, drops are counted."""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from picometer.config import StorageConfig
from picometer.record import Record, rfc3339_ms
from picometer.store import usagelog
from picometer.store.usagelog import UsageLog, log_files, read_records
from tests.clocks import ManualClock
from tests.servers import GatewayServer

MIB = 1024 * 1024


def storage(tmp: Path, **kw: object) -> StorageConfig:
    return StorageConfig(log_dir=str(tmp / "logs"), data_dir=str(tmp / "data"), min_free_mb=0, **kw)  # type: ignore[arg-type]


def rec(clock: ManualClock, i: int) -> Record:
    return Record(
        ts=rfc3339_ms(clock.now()),
        request_id=f"{i:016x}",
        workflow="flood",
        provider="openai",
        endpoint="chat/completions",
        model="gpt-4o-mini",
        input_tokens=i % 997,
        output_tokens=i % 89,
        cost_usd=0.000021,
        latency_ms=float(i % 300),
        usage_source="provider",
        attempts=1,
    )


def dir_bytes(path: Path) -> int:
    """Everything in the directory now, in-progress files included (they may vanish while we look)."""
    total = 0
    for entry in os.scandir(path):
        with contextlib.suppress(FileNotFoundError):
            total += entry.stat().st_size
    return total


def test_flood_never_passes_the_cap_and_keeps_the_newest(tmp_path: Path) -> None:
    clock = ManualClock()
    log = UsageLog(storage(tmp_path, log_max_bytes=MIB, log_rotate_bytes=128 * 1024), clock)
    peak = 0
    for i in range(200_000):
        log.write(rec(clock, i))
        if i % 250 == 0:
            clock.advance(1)
            peak = max(peak, dir_bytes(log.dir))
            assert peak <= MIB, f"{peak} bytes on disk after {i} records"
    log.close()
    files = log_files(log.dir)
    assert sum(f.name.endswith(".gz") for f in files) >= 3, "rotated files are gzipped"
    assert dir_bytes(log.dir) <= MIB
    ids = [int(r["request_id"], 16) for r, _ in read_records(log.dir)]
    assert ids[-1] == 199_999 and ids == sorted(ids), "the newest records are kept, in order"
    assert ids[0] > 0, "the oldest went to keep the cap"
    assert len(ids) > 20_000, "the cap is used, not wasted"
    print(f"peak {peak} bytes, {len(ids)} records kept in {len(files)} files")


def test_enospc_drops_and_counts_without_raising(tmp_path: Path) -> None:
    clock = ManualClock()
    log = UsageLog(storage(tmp_path), clock)
    assert log.write(rec(clock, 1)) is not None

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    log._write = full
    assert log.write(rec(clock, 2)) is None and log.dropped == 1 and log.disk_low
    log._write = lambda fd, data: os.write(fd, data[: len(data) // 2])  # a short write as the disk fills
    clock.advance(2)
    assert log.write(rec(clock, 3)) is None and log.dropped == 2
    log._write = os.write
    clock.advance(2)
    assert log.write(rec(clock, 4)) is not None
    log.close()
    ids = [r["request_id"] for r, _ in read_records(log.dir)]
    assert ids == [f"{1:016x}", f"{4:016x}"], "no torn line was left between records"


def test_low_free_space_drops_raw_lines(tmp_path: Path) -> None:
    clock = ManualClock()
    free = [10 * MIB]
    cfg = StorageConfig(log_dir=str(tmp_path / "l"), min_free_mb=200)
    log = UsageLog(cfg, clock, free_bytes=lambda p: free[0])
    assert log.write(rec(clock, 1)) is None and log.disk_low and log.dropped == 1
    free[0] = 500 * MIB
    clock.advance(1.5)
    assert log.write(rec(clock, 2)) is not None and not log.disk_low
    log.close()


def test_retention_deletes_old_files_but_never_the_current(tmp_path: Path) -> None:
    clock = ManualClock()
    log = UsageLog(storage(tmp_path, log_retention_days=7), clock)
    old = log.dir / "usage-20260101-000000.jsonl.gz"
    old.write_bytes(b"x")
    month_ago = time.time() - 30 * 86400
    os.utime(old, (month_ago, month_ago))
    os.utime(log.path, (month_ago, month_ago))
    log.prune()
    assert not old.exists() and log.path.exists()
    log.close()


def test_a_full_disk_fails_no_client_request(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway()

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    gw.daemon.usage_log._write = full
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(5):
        r = httpx.post(f"{gw.url}/openai/chat/completions", json=chat, trust_env=False)
        assert r.status_code == 200
    status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    assert status["usage_log"]["records_dropped"] == 5 and status["usage_log"]["disk_low"]
    assert status["requests"] == 5
    assert status["spend_usd"]["today"] > 0, "metering in the rollups goes on without the raw lines"
    gw.daemon.teller.watch_usage_log()
    gw.daemon.teller.watch_usage_log()  # still dropping: told once, not on every tick
    kinds = [a.kind for a in gw.daemon.alerts]
    assert kinds.count("disk_low") == 1 and kinds.count("records_dropped") == 1
    dropped = next(a for a in gw.daemon.alerts if a.kind == "records_dropped")
    assert dropped.message.startswith("5 usage log lines dropped") and dropped.severity == "critical"


def test_a_clock_behind_the_newest_file_still_names_the_next_file_after_it(tmp_path: Path) -> None:
    """Replay goes by file order: a boot in the past must not make a file that sorts before the last one."""
    from datetime import UTC, datetime

    cfg = StorageConfig(data_dir=str(tmp_path / "data"), log_dir=str(tmp_path / "logs"))
    first = UsageLog(cfg, ManualClock(datetime(2026, 11, 30, 10, 0, tzinfo=UTC)))
    first.write(Record(ts="2026-11-30T10:00:00.000Z", request_id="a"))
    first.close()
    second = UsageLog(cfg, ManualClock(datetime(2026, 11, 29, 20, 0, tzinfo=UTC)))  # booted yesterday evening
    second.write(Record(ts="2026-11-29T20:00:00.000Z", request_id="b"))
    second.close()
    files = log_files(tmp_path / "logs")
    assert len(files) == 2 and files[-1].name.startswith(second.path.name)
    assert [r["request_id"] for r, _ in read_records(tmp_path / "logs")] == ["a", "b"]


def test_a_file_compressed_after_it_was_listed_is_read_in_its_gz_form(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A replay or a heal lists the files while rotation's worker compresses one: none may be skipped.
    (tmp_path / "usage-20261130-120000.jsonl").write_text('{"n": 1}\n{"n": 2}\n', encoding="utf-8")
    listed = log_files(tmp_path)
    usagelog._compress(listed[0])
    monkeypatch.setattr(usagelog, "log_files", lambda _: listed)
    assert [r["n"] for r, _ in read_records(tmp_path)] == [1, 2]
