"""Rollups equal the sums over the log, exactly once, across flushes, crashes and replays."""

from __future__ import annotations

import gzip
import math
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from picometer.config import StorageConfig
from picometer.local_time import period_start
from picometer.metering import histogram
from picometer.record import Record, Recorder, rfc3339_ms
from picometer.store.rollups import SCHEMA_VERSION, Rollups, totals
from picometer.store.usagelog import UsageLog, read_records
from tests.clocks import ManualClock

T0 = datetime(2026, 11, 23, 22, 50, tzinfo=UTC)


@st.composite
def records(draw: st.DrawFn) -> Record:
    cost = draw(st.one_of(st.none(), st.floats(0, 2, allow_nan=False)))
    inp = draw(st.integers(0, 100_000))
    return Record(
        ts=rfc3339_ms(T0 + timedelta(seconds=draw(st.integers(0, 4 * 3600)))),  # crosses hour and day boundaries
        request_id="r",
        workflow=draw(st.sampled_from(["cron", "bot", "🌱 garden", "untagged"])),
        env=draw(st.sampled_from(["prod", "dev"])),
        provider=draw(st.sampled_from(["openai", "anthropic"])),
        model=draw(st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", None])),
        status=draw(st.sampled_from(["ok", "error", "blocked"])),
        attempts=draw(st.integers(0, 3)),
        input_tokens=inp,
        cached_input_tokens=draw(st.integers(0, inp)),
        output_tokens=draw(st.integers(0, 10_000)),
        reasoning_tokens=draw(st.integers(0, 100)),
        cost_usd=cost,
        latency_ms=draw(st.floats(0, 600_000, allow_nan=False)),
    )


def storage(tmp: Path, **kw: object) -> StorageConfig:
    return StorageConfig(log_dir=str(tmp / "logs"), data_dir=str(tmp / "data"), **kw)  # type: ignore[arg-type]


def log_sums(log_dir: Path) -> dict[str, float]:
    sums = dict.fromkeys(
        ["requests", "ok", "errors", "blocked", "retries", "input_tokens", "output_tokens", "cost_usd", "unpriced"], 0.0
    )
    for r, _ in read_records(log_dir):
        sums["requests"] += 1
        sums[{"ok": "ok", "error": "errors", "blocked": "blocked"}[r["status"]]] += 1
        sums["retries"] += max(r["attempts"] - 1, 0)
        sums["input_tokens"] += r["input_tokens"]
        sums["output_tokens"] += r["output_tokens"]
        sums["cost_usd"] += r["cost_usd"] or 0.0
        sums["unpriced"] += r["cost_usd"] is None
    return sums


def rollup_sums(rollups: Rollups) -> dict[str, float]:
    rows = rollups.summary(0, 10**7, "workflow")
    return totals(rows)


def assert_equal(a: dict[str, float], b: dict[str, float]) -> None:
    for key, value in a.items():
        assert b[key] == pytest.approx(value, abs=1e-6), key


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(records(), max_size=60), st.sets(st.integers(0, 60)), st.integers(0, 60))
def test_rollups_equal_the_log_even_after_a_crash_and_replay(
    tmp_path_factory: pytest.TempPathFactory, recs: list[Record], flush_at: set[int], crash_at: int
) -> None:
    tmp = tmp_path_factory.mktemp("r")
    cfg = storage(tmp, log_rotate_bytes=8192, log_max_bytes=10**8)
    usage_log = UsageLog(cfg, ManualClock())
    rollups = Rollups(tmp / "data" / "rollups.db")
    record = Recorder(usage_log, rollups)
    for i, rec in enumerate(recs):
        record(rec)
        if i in flush_at:
            rollups.flush()
        if i == crash_at:
            # A crash: what was folded but not flushed is gone; the log has it.
            rollups._batch.counters.clear()
            rollups._batch.bins.clear()
            rollups._batch.spend.clear()
            rollups._batch.position = None
            rollups = Rollups(tmp / "data" / "rollups.db")
            rollups.replay(usage_log.dir)
            record = Recorder(usage_log, rollups)
    rollups.flush()
    usage_log.close()
    assert_equal(log_sums(usage_log.dir), rollup_sums(rollups))
    # and a restart replays nothing twice
    again = Rollups(tmp / "data" / "rollups.db")
    assert again.replay(usage_log.dir) == 0
    assert_equal(log_sums(usage_log.dir), rollup_sums(again))
    # the quarter-hour spend that budgets start from holds the same dollars
    epoch = datetime.fromtimestamp(0, UTC)
    assert again.spend_since(epoch) == pytest.approx(log_sums(usage_log.dir)["cost_usd"], rel=1e-9, abs=1e-9)


@given(st.lists(st.floats(0.01, 3_000_000, allow_nan=False), min_size=1, max_size=300), st.floats(0.01, 1))
def test_histogram_percentile_is_within_its_documented_error(latencies: list[float], q: float) -> None:
    bins: dict[int, int] = {}
    for ms in latencies:
        b = histogram.bin_of(ms)
        bins[b] = bins.get(b, 0) + 1
    exact = sorted(latencies)[max(1, math.ceil(q * len(latencies))) - 1]
    estimate = histogram.percentile(bins, q)
    assert estimate is not None
    if exact >= histogram.BASE_MS:
        assert abs(estimate - exact) / exact <= histogram.RELATIVE_ERROR + 1e-9
    else:
        assert estimate <= histogram.bin_value(0)


def test_reader_reads_gz_and_skips_a_torn_last_line(tmp_path: Path) -> None:
    (tmp_path / "usage-20261101-000000.jsonl.gz").write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    (tmp_path / "usage-20261102-000000.jsonl").write_bytes(b'{"a": 3}\nnot json\n{"a": 4}\n{"a": 5, "tor')
    got = [(r["a"], p.offset) for r, p in read_records(tmp_path)]
    assert got == [(1, 9), (2, 18), (3, 9), (4, 27)]
    after = [r["a"] for r, _ in read_records(tmp_path, after=read_records(tmp_path).__next__()[1])]
    assert after == [2, 3, 4]


def test_schema_is_versioned_and_a_newer_file_is_refused(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "r.db"
    Rollups(db).close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.execute("PRAGMA user_version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(RuntimeError, match="upgrade picometer"):
        Rollups(db)


def test_spend_since_is_exact_at_a_half_hour_zone_midnight(tmp_path: Path) -> None:
    from zoneinfo import ZoneInfo

    rollups = Rollups(tmp_path / "r.db")
    for minute, workflow, cost in ((20, "a", 1.0), (40, "a", 2.0), (50, "b", 4.0)):
        rollups.add(Record(ts=rfc3339_ms(datetime(2026, 11, 23, 18, minute, tzinfo=UTC)), request_id="r",
                           workflow=workflow, cost_usd=cost), None)  # fmt: skip
    midnight = period_start(datetime(2026, 11, 24).date(), ZoneInfo("Asia/Kolkata"))
    assert midnight == datetime(2026, 11, 23, 18, 30, tzinfo=UTC)
    assert rollups.spend_since(midnight) == 6.0, "pending records count, the 18:20 one belongs to yesterday"
    rollups.flush()
    assert rollups.spend_since(midnight) == 6.0 and rollups.spend_since(midnight, "a") == 2.0
    assert rollups.pace(datetime(2026, 11, 23, 19, 0, tzinfo=UTC)) == 7.0, "dollars in the last hour, per hour"
    assert rollups.pace(datetime(2026, 11, 23, 19, 10, tzinfo=UTC)) == pytest.approx(7.0 * 60 / 70)
    rollups.prune_spend(datetime(2027, 3, 1, tzinfo=UTC))
    assert rollups.spend_since(midnight) == 0.0
    rollups.close()


def test_an_older_database_gets_the_spend_table_from_its_hourly_rows(tmp_path: Path) -> None:
    import sqlite3

    from picometer.store.rollups import MIGRATIONS
    from picometer.store.schema import migrate

    db = tmp_path / "r.db"
    conn = sqlite3.connect(db, isolation_level=None)
    migrate(conn, MIGRATIONS[:1], "rollup")
    conn.execute("INSERT INTO series (id, workflow, env, provider, model) VALUES (1, 'w', 'prod', 'openai', 'm')")
    hour = int(datetime(2026, 11, 23, 10, tzinfo=UTC).timestamp()) // 3600
    conn.execute("INSERT INTO rollup VALUES (?, 1, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0.75, 0, 30.0)", (hour,))
    conn.close()
    rollups = Rollups(db)
    assert rollups.spend_since(datetime(2026, 11, 23, 10, tzinfo=UTC), "w") == 0.75
    assert rollups.spend_since(datetime(2026, 11, 23, 10, 15, tzinfo=UTC), "w") == 0.0
    rollups.close()


class FullAtCommit:
    """The rollups' connection, but COMMIT fails the way a full disk fails it: SQLite has already rolled the
    transaction back by itself, so a ROLLBACK after it finds no transaction."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.full = db, True

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if sql == "COMMIT" and self.full:
            self.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> sqlite3.Cursor:
        return self.db.executemany(sql, rows)


def test_a_flush_that_fails_on_a_full_disk_mixes_no_series(tmp_path: Path) -> None:
    """The series ids handed out inside a failed flush must not be used again, or one workflow's spend would
    later be counted as another's."""
    rollups = Rollups(tmp_path / "rollups.db")
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

    def rec(workflow: str, cost: float) -> Record:
        return Record(
            ts=rfc3339_ms(at), request_id=workflow, workflow=workflow, provider="openai", model="m", cost_usd=cost
        )

    rollups.add(rec("seed", 0.5), None)
    assert rollups.flush()
    real = rollups._db
    rollups._db = disk = FullAtCommit(real)  # type: ignore[assignment]
    for name, cost in (("alpha", 0.01), ("beta", 0.02)):
        rollups.add(rec(name, cost), None)
    assert not rollups.flush(), "the write did not fit"
    disk.full = False  # space again
    rollups.add(rec("late", 2.0), None)
    assert rollups.flush()
    start = datetime(2026, 11, 23, tzinfo=UTC)
    spends = {w: rollups.spend_since(start, w) for w in ("seed", "alpha", "beta", "late")}
    assert spends == pytest.approx({"seed": 0.5, "alpha": 0.01, "beta": 0.02, "late": 2.0})
    by_workflow = {row["key"]: row["cost_usd"] for row in rollups.summary(0, 10**7, "workflow")}
    assert by_workflow == pytest.approx({"seed": 0.5, "alpha": 0.01, "beta": 0.02, "late": 2.0})


def test_past_max_series_new_names_fold_into_other_and_nothing_is_lost(tmp_path: Path) -> None:
    rollups = Rollups(tmp_path / "rollups.db", max_series=100, protected=frozenset({"budgeted"}))
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    names = [f"job-{i}" for i in range(1000)] + ["budgeted"]
    for name in names:
        rollups.add(
            Record(ts=rfc3339_ms(at), request_id=name, workflow=name, provider="openai", model=name, cost_usd=0.01),
            None,
        )
    assert rollups.flush()
    (series,) = rollups._db.execute("SELECT COUNT(*) FROM series").fetchone()
    assert series <= 102, "100, then one 'other' and the protected workflow's own"
    by_workflow = {row["key"]: row for row in rollups.summary(0, 10**7, "workflow")}
    assert sum(r["requests"] for r in by_workflow.values()) == len(names), "folded, not lost"
    assert by_workflow["other"]["requests"] == len(names) - 100 - 1
    assert by_workflow["budgeted"]["cost_usd"] == pytest.approx(0.01), "a configured workflow keeps its own spend"
    assert rollups.spend_since(datetime(2026, 11, 23, tzinfo=UTC)) == pytest.approx(0.01 * len(names))
    assert rollups.folded == len(names) - 100
