"""Hourly rollups in SQLite: the materialized view of the usage log.

Per UTC hour x workflow x env x provider x model: counts by status, tokens by type, cost, retries, a
log-scale latency histogram, and the answers that stood in for another (cache hits with what they saved,
fallbacks, downgrades). Records are folded in memory and written in one transaction
every few seconds, together with a watermark (the log position of the last record folded in).
On start the log past the watermark is replayed, so every record is counted exactly once.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from picometer.local_time import hour_of, quarter_of
from picometer.record import Record
from picometer.store.folding import COUNTERS, DIMENSIONS, Batch, SeriesKey, fold, new_batch, record_from_dict
from picometer.store.schema import connect, damaged, intact, reopen
from picometer.store.usagelog import Position, read_records

log = structlog.get_logger("picometer.rollups")

# Each entry moves the schema from version i to i + 1; PRAGMA user_version says where a file is.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE series (
            id INTEGER PRIMARY KEY,
            workflow TEXT NOT NULL, env TEXT NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
            UNIQUE (workflow, env, provider, model))""",
        """CREATE TABLE rollup (
            hour INTEGER NOT NULL, series INTEGER NOT NULL REFERENCES series(id),
            requests INTEGER NOT NULL, ok INTEGER NOT NULL, errors INTEGER NOT NULL, blocked INTEGER NOT NULL,
            retries INTEGER NOT NULL, input_tokens INTEGER NOT NULL, cached_input_tokens INTEGER NOT NULL,
            cache_write_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL,
            cost_usd REAL NOT NULL, unpriced INTEGER NOT NULL, latency_ms_sum REAL NOT NULL,
            PRIMARY KEY (hour, series)) WITHOUT ROWID""",
        """CREATE TABLE latency (
            hour INTEGER NOT NULL, series INTEGER NOT NULL, bin INTEGER NOT NULL, count INTEGER NOT NULL,
            PRIMARY KEY (hour, series, bin)) WITHOUT ROWID""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
    (
        # Spend per quarter hour and workflow: budget periods start at local midnight, and every zone's
        # offset is a whole number of quarter hours, so a day or month sum is exact in any zone.
        """CREATE TABLE spend (
            quarter INTEGER NOT NULL, workflow TEXT NOT NULL, cost_usd REAL NOT NULL,
            PRIMARY KEY (quarter, workflow)) WITHOUT ROWID""",
        """INSERT INTO spend (quarter, workflow, cost_usd)
            SELECT r.hour * 4, s.workflow, SUM(r.cost_usd) FROM rollup r JOIN series s ON s.id = r.series
            GROUP BY r.hour, s.workflow""",
    ),
    (
        # Answers that stood in for the one asked: from the cache, a fallback provider, a budget downgrade.
        # Hours folded before them had none (no earlier picometer made such answers): 0 is their true count.
        "ALTER TABLE rollup ADD COLUMN cache_hits INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rollup ADD COLUMN cost_saved_usd REAL NOT NULL DEFAULT 0",
        "ALTER TABLE rollup ADD COLUMN fallbacks INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE rollup ADD COLUMN downgrades INTEGER NOT NULL DEFAULT 0",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
SPEND_KEEP_S = 62 * 86400  # quarter-hour spend kept long enough for this month and the last

UPSERT_ROLLUP = (
    f"INSERT INTO rollup (hour, series, {', '.join(COUNTERS)}) VALUES ({', '.join('?' * (len(COUNTERS) + 2))})"
    " ON CONFLICT (hour, series) DO UPDATE SET " + ", ".join(f"{c} = {c} + excluded.{c}" for c in COUNTERS)
)

OTHER = "other"


class Rollups:
    """`max_series`: distinct (workflow, env, provider, model) kept; a record past it is folded into "other"
    (its workflow kept when it is one of `protected`, the configured ones whose budgets read the spend), so
    memory and the file stay bounded whatever names arrive. The usage log keeps the real names."""

    def __init__(self, path: Path, max_series: int = 5000, protected: frozenset[str] = frozenset()) -> None:
        self.path = path
        self.max_series = max_series
        self.protected = protected
        # One connection, used by one thread at a time (the loop's reads, or a flush on a worker).
        self._db, self.moved_aside = connect(path, MIGRATIONS, "rollup")  # moved_aside: a damaged file, kept
        self._lock = threading.Lock()
        self._db_lock = threading.Lock()
        self._series = self._load_series()
        self._known: set[SeriesKey] = set(self._series)  # every series stored or pending: what the cap counts
        (hour,) = self._db.execute("SELECT MAX(hour) FROM rollup").fetchone()
        # The newest record seen (to the hour from the file, exact from what is folded): the clock's floor.
        self.newest: datetime | None = None if hour is None else datetime.fromtimestamp(hour * 3600, UTC)
        self.folded = 0  # records folded into "other" since start
        self.watermark = self._read_watermark()
        self._batch = new_batch()
        self.flush_failures = 0
        self.damaged = False  # found damaged while running: heal() rebuilds it from the log

    # ---------------------------------------------------------------- healing

    def check(self) -> bool:
        """SQLite's quick check of the file; False (and `damaged`) when it is no longer sound."""
        with self._db_lock:  # no flush half-written while it looks
            sound = intact(self.path)
        self.damaged = self.damaged or not sound
        return sound

    def heal(self, log_dir: Path) -> Path:
        """The file went bad while running: move it aside, start a fresh one and fold the usage log into it
        again. Records that arrive meanwhile are counted once: the replay stops where they begin."""
        with self._db_lock, self._lock:
            until = self._batch.position or self.watermark
            self._batch = new_batch()  # everything pending is in the log up to `until`: folded again below
            self._db.close()
            self._db, aside = reopen(self.path, MIGRATIONS, "rollup")
            self._series, self._known, self.watermark = {}, set(), None
            self.damaged = False
        log.error("damaged rollups database replaced while running; rebuilding from the usage log", kept_as=str(aside))
        if until is not None:
            self.replay(log_dir, until)
        return aside

    # ---------------------------------------------------------------- folding

    def add(self, rec: Record, position: Position | None) -> None:
        moment = datetime.fromisoformat(rec.ts)
        if self.newest is None or moment > self.newest:
            self.newest = moment
        with self._lock:
            key: SeriesKey = (rec.workflow, rec.env, rec.provider, rec.model or "")
            if key not in self._known:
                if len(self._known) >= self.max_series:
                    key = (rec.workflow if rec.workflow in self.protected else OTHER, OTHER, OTHER, OTHER)
                    self.folded += 1
                self._known.add(key)
            fold(self._batch, rec, moment, key)
            if position is not None:
                self._batch.advance(position)

    def replay(self, log_dir: Path, until: Position | None = None) -> int:
        """Fold every logged record past the watermark (up to `until`), then flush. Returns how many."""
        count = 0
        for data, position in read_records(log_dir, self.watermark, until):
            try:
                rec = record_from_dict(data)
                hour_of(rec.ts)
            except (TypeError, ValueError):
                continue
            self.add(rec, position)
            count += 1
            if count % 50_000 == 0:
                self.flush()
        self.flush()
        if count:
            log.info("replayed usage log into rollups", records=count)
        return count

    def flush(self) -> bool:
        """Write what is pending in one transaction with the new watermark. False: kept for the next try."""
        with self._lock:
            batch, self._batch = self._batch, new_batch()
        if not batch.counters and batch.position is None:
            return True
        try:
            with self._db_lock:
                self._write(batch)
        except sqlite3.Error as e:
            self.flush_failures += 1
            self.damaged = self.damaged or damaged(e)
            log.warning("rollup flush failed; keeping the batch in memory", error=str(e))
            with self._lock:  # put it back in front of what arrived meanwhile
                batch.merge(self._batch)
                self._batch = batch
            return False
        if batch.position is not None:
            self.watermark = batch.position
        return True

    def _write(self, batch: Batch) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            ids = {key: self._series_id(key) for (_, key) in batch.counters}
            db.executemany(
                UPSERT_ROLLUP,
                [(hour, ids[key], *row) for (hour, key), row in batch.counters.items()],
            )
            db.executemany(
                "INSERT INTO latency (hour, series, bin, count) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (hour, series, bin) DO UPDATE SET count = count + excluded.count",
                [(hour, ids[key], b, n) for (hour, key, b), n in batch.bins.items()],
            )
            db.executemany(
                "INSERT INTO spend (quarter, workflow, cost_usd) VALUES (?, ?, ?)"
                " ON CONFLICT (quarter, workflow) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd",
                [(q, w, cost) for (q, w), cost in batch.spend.items()],
            )
            if batch.position is not None:
                db.executemany(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [("watermark_stem", batch.position.stem), ("watermark_offset", str(batch.position.offset))],
                )
            db.execute("COMMIT")
        except BaseException:
            # Ids handed out inside the failed transaction are void: forget every cached id (each is asked
            # again, and INSERT ... ON CONFLICT RETURNING gives the stored one). Forgotten first, since the
            # ROLLBACK itself fails when SQLite already rolled back on its own (a full disk at COMMIT).
            self._series = {}
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def workflows(self) -> set[str]:
        """Every workflow that has made a call, flushed or not ("other" once max_series folded the rest)."""
        with self._lock:
            return {key[0] for key in self._known}

    def _load_series(self) -> dict[SeriesKey, int]:
        rows = self._db.execute("SELECT id, workflow, env, provider, model FROM series")
        return {(w, e, p, m): i for i, w, e, p, m in rows}

    def _series_id(self, key: SeriesKey) -> int:
        known = self._series.get(key)
        if known is None:
            cur = self._db.execute(
                "INSERT INTO series (workflow, env, provider, model) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET workflow = excluded.workflow RETURNING id",
                key,
            )
            known = self._series[key] = int(cur.fetchone()[0])
        return known

    def _read_watermark(self) -> Position | None:
        meta = dict(self._db.execute("SELECT key, value FROM meta"))
        if "watermark_stem" not in meta:
            return None
        return Position(meta["watermark_stem"], int(meta["watermark_offset"]))

    # ---------------------------------------------------------------- queries

    def summary(self, start_hour: int, end_hour: int, by: str) -> list[dict[str, Any]]:
        """Totals and latency histograms per value of `by` for hours in [start_hour, end_hour)."""
        if by not in DIMENSIONS:
            raise ValueError(by)
        # Group by series id inside SQLite (no join per row), then by the dimension here: few series, many rows.
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT series, {', '.join(f'SUM({c})' for c in COUNTERS)} FROM rollup"
                " WHERE hour >= ? AND hour < ? GROUP BY series",
                (start_hour, end_hour),
            ).fetchall()
            bins = self._db.execute(
                "SELECT series, bin, SUM(count) FROM latency WHERE hour >= ? AND hour < ? GROUP BY series, bin",
                (start_hour, end_hour),
            ).fetchall()
            column = DIMENSIONS.index(by)  # SeriesKey holds the dimensions in this order
            names = {i: key[column] for key, i in self._load_series().items()}
        out: dict[str, dict[str, Any]] = {}
        for series, *sums in rows:
            row = out.setdefault(names[series], {"key": names[series], **dict.fromkeys(COUNTERS, 0), "bins": {}})
            for c, v in zip(COUNTERS, sums, strict=True):
                row[c] += v
        for series, b, n in bins:
            row_bins = out[names[series]]["bins"]
            row_bins[b] = row_bins.get(b, 0) + n
        return sorted(out.values(), key=lambda r: (-r["cost_usd"], r["key"]))

    def hourly(self, start_hour: int, end_hour: int) -> list[dict[str, Any]]:
        """Every stored (hour, series) row in [start_hour, end_hour), with its latency bins: what the weekly
        CSV is made of."""
        with self._db_lock:
            rows = self._db.execute(
                f"SELECT r.hour, s.workflow, s.env, s.provider, s.model, {', '.join(f'r.{c}' for c in COUNTERS)}"
                " FROM rollup r JOIN series s ON s.id = r.series WHERE r.hour >= ? AND r.hour < ?",
                (start_hour, end_hour),
            ).fetchall()
            bins = self._db.execute(
                "SELECT l.hour, s.workflow, s.env, s.provider, s.model, l.bin, l.count FROM latency l"
                " JOIN series s ON s.id = l.series WHERE l.hour >= ? AND l.hour < ?",
                (start_hour, end_hour),
            ).fetchall()
        out: dict[tuple[Any, ...], dict[str, Any]] = {}
        for hour, *key_and_sums in rows:
            key, sums = tuple(key_and_sums[:4]), key_and_sums[4:]
            out[(hour, *key)] = {"hour": hour, **dict(zip(DIMENSIONS, key, strict=True)),
                                 **dict(zip(COUNTERS, sums, strict=True)), "bins": {}}  # fmt: skip
        for hour, w, e, p, m, b, n in bins:
            row = out.get((hour, w, e, p, m))
            if row is not None:
                row["bins"][b] = n
        return list(out.values())

    def history(self, start_hour: int, end_hour: int) -> list[tuple[int, str, str, int, int, int, int, float]]:
        """(hour, workflow, model, requests, retries, input_tokens, cached_input_tokens, cost) per hour in
        [start_hour, end_hour), over envs and providers: what the anomaly baselines are made of."""
        with self._db_lock:
            rows = self._db.execute(
                "SELECT r.hour, s.workflow, s.model, SUM(r.requests - r.blocked), SUM(r.retries),"
                " SUM(r.input_tokens), SUM(r.cached_input_tokens), SUM(r.cost_usd)"
                " FROM rollup r JOIN series s ON s.id = r.series WHERE r.hour >= ? AND r.hour < ?"
                " GROUP BY r.hour, s.workflow, s.model",
                (start_hour, end_hour),
            ).fetchall()
        return [tuple(r) for r in rows]

    def spend_since(self, start: datetime, workflow: str | None = None) -> float:
        """Dollars spent from `start` (a quarter-hour boundary) on, for one workflow or all; unflushed included."""
        first = quarter_of(start)
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM spend WHERE quarter >= ?"
        args: tuple[Any, ...] = (first,)
        if workflow is not None:
            sql, args = sql + " AND workflow = ?", (first, workflow)
        with self._db_lock:
            (stored,) = self._db.execute(sql, args).fetchone()
        with self._lock:
            pending = sum(
                cost for (q, w), cost in self._batch.spend.items() if q >= first and (workflow is None or w == workflow)
            )
        return float(stored) + pending

    def pace(self, now: datetime, workflow: str | None = None) -> float:
        """Dollars per hour over about the last hour (quarter-hour resolution)."""
        start = datetime.fromtimestamp(quarter_of(now - timedelta(hours=1)) * 900, UTC)
        hours = max((now - start).total_seconds() / 3600, 0.25)
        return self.spend_since(start, workflow) / hours

    def prune_spend(self, now: datetime) -> None:
        """Quarter-hour spend is for budgets only: drop what is older than last month."""
        with self._db_lock:
            self._db.execute("DELETE FROM spend WHERE quarter < ?", (quarter_of(now) - SPEND_KEEP_S // 900,))

    def close(self) -> None:
        self.flush()
        with self._db_lock:
            self._db.close()


def totals(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    out = dict.fromkeys(COUNTERS, 0.0)
    for row in rows:
        for c in COUNTERS:
            out[c] += row[c]
    return out
