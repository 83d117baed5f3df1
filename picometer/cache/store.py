"""The response cache on disk: one SQLite table of answers in {data_dir}/cache.sqlite, least recently used
evicted past max_mb, each kept at most ttl_s.

Thread-safe (one connection behind a lock: the gateway calls it through asyncio.to_thread). It never
raises on a storage failure: a lookup that fails is a miss, an answer that cannot be stored is not. A
damaged file is set aside and the cache starts empty; the file is opened on first use, so a daemon whose
cache stays off never makes one.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import structlog

from picometer.config.sections import Config
from picometer.store.schema import connect, damaged, reopen

log = structlog.get_logger("picometer.cache")

MB = 1024 * 1024
# Counted per entry on top of its answer: its other columns, its index entries and the unused part of its
# last page. Measured: with it the file stays within max_mb whatever the answers' sizes (worst near 2 KB).
ROW_OVERHEAD = 2560
FILE_NAME = "cache.sqlite"
_EVICT_BATCH = 64  # rows read at a time while evicting: memory stays flat whatever the cache holds
_WAL_LIMIT = 4 * MB  # the write-ahead log is cut back to this after a checkpoint

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # The answer last: the small columns stay on the row's first page, so eviction never reads answers.
        """CREATE TABLE entry (
            key TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, last_used_at REAL NOT NULL,
            expires_at REAL NOT NULL, size INTEGER NOT NULL, status INTEGER NOT NULL, content_type TEXT NOT NULL,
            cost_usd REAL, model TEXT NOT NULL, provider TEXT NOT NULL, body BLOB NOT NULL)""",
        "CREATE INDEX entry_lru ON entry (last_used_at)",
        "CREATE INDEX entry_expiry ON entry (expires_at)",
    ),
)

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """A stored answer, as the client received it: a whole JSON body, or a whole SSE stream's bytes."""

    status: int
    content_type: str
    body: bytes
    cost_usd: float | None  # what the original call cost: a hit saves this much
    model: str
    provider: str
    # Seconds since the epoch, set by the store.
    created_at: float = 0.0
    last_used_at: float = 0.0
    expires_at: float = 0.0


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int  # answers plus ROW_OVERHEAD each: what max_mb bounds


def entry_size(entry: Entry) -> int:
    return len(entry.body) + ROW_OVERHEAD


class CacheStore:
    def __init__(self, path: Path, max_mb: int, ttl_s: float) -> None:
        self.path = path
        self.max_bytes = max_mb * MB
        self.ttl_s = ttl_s
        self.moved_aside: Path | None = None  # where a damaged file went
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._entries = 0
        self._bytes = 0
        self._failing = False  # a storage failure was logged; the next one is not, until it works again

    @classmethod
    def from_config(cls, config: Config) -> CacheStore:
        return cls(Path(config.storage.data_dir) / FILE_NAME, config.cache.max_mb, config.cache.ttl_s)

    # ---------------------------------------------------------------- the interface

    def get(self, key: str, now: datetime) -> Entry | None:
        """The answer stored under `key` and still fresh, else None (an expired one is deleted)."""
        return self._run(lambda db: self._get(db, key, now.timestamp()), None)

    def put(self, key: str, entry: Entry, now: datetime) -> bool:
        """Store an answer (replacing one under the same key), evicting the least recently used until all fit
        in max_mb. False when not stored: larger than a quarter of max_mb, or the storage failed."""
        if entry_size(entry) > self.max_bytes // 4:
            return False
        return self._run(lambda db: self._put(db, key, entry, now.timestamp()), False)

    def prune(self, now: datetime) -> int:
        """Delete the expired entries (a chore for the daemon's tick); how many went."""
        return self._run(lambda db: self._prune(db, now.timestamp()), 0)

    def stats(self) -> CacheStats:
        """What the cache holds; no file is made to say it holds nothing."""
        if self._db is None and not self.path.exists():
            return CacheStats(0, 0)
        return self._run(lambda db: CacheStats(self._entries, self._bytes), CacheStats(0, 0))

    def reconfigure(self, config: Config) -> None:
        """A reloaded [cache]: a smaller max_mb evicts at once, a shorter ttl_s applies to what is stored."""
        with self._lock:
            self.max_bytes = config.cache.max_mb * MB
            shorter = config.cache.ttl_s < self.ttl_s
            self.ttl_s = config.cache.ttl_s
        if self._db is not None:
            self._run(lambda db: self._shrink(db, shorter), None)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---------------------------------------------------------------- inside the lock

    def _run(self, op: Callable[[sqlite3.Connection], T], failed: T) -> T:
        """`op` on the open connection, under the lock; `failed` when the storage fails (logged once)."""
        with self._lock:
            try:
                result = op(self._open())
            except sqlite3.Error as e:
                self._rollback()
                if isinstance(e, sqlite3.DatabaseError) and damaged(e):
                    self._set_aside()
                else:
                    self._fail(e)
                return failed
            except (OSError, RuntimeError) as e:  # data_dir not writable; a file from a newer picometer
                self._fail(e)
                return failed
            self._failing = False
            return result

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            db, aside = connect(self.path, MIGRATIONS, "cache")
            if aside is not None:
                self.moved_aside = aside
                log.error("damaged response cache set aside; starting empty", kept_as=str(aside))
            self._adopt(db)
        assert self._db is not None
        return self._db

    def _adopt(self, db: sqlite3.Connection) -> None:
        self._db = db  # first, so a failure below closes it
        db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        self._entries, self._bytes = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM entry").fetchone()
        self._shrink(db, True)  # the config may have changed since the file was last open

    def _set_aside(self) -> None:
        """The file went bad while running: a fresh one in its place."""
        if self._db is not None:
            self._db.close()
            self._db = None
        try:
            db, aside = reopen(self.path, MIGRATIONS, "cache")
            self.moved_aside = aside
            log.error("damaged response cache set aside; starting empty", kept_as=str(aside))
            self._adopt(db)
        except (sqlite3.Error, OSError, RuntimeError) as e:
            self._rollback()
            self._fail(e)

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def _fail(self, e: BaseException) -> None:
        if not self._failing:
            log.warning("response cache unavailable; calls go upstream", path=str(self.path), error=str(e))
        self._failing = True

    def _get(self, db: sqlite3.Connection, key: str, now: float) -> Entry | None:
        row = db.execute(
            "SELECT status, content_type, body, cost_usd, model, provider, created_at, last_used_at, expires_at, size"
            " FROM entry WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        if now >= row[8]:
            db.execute("DELETE FROM entry WHERE key = ?", (key,))
            self._entries, self._bytes = self._entries - 1, self._bytes - row[9]
            return None
        db.execute("UPDATE entry SET last_used_at = ? WHERE key = ?", (now, key))
        status, content_type, body, cost_usd, model, provider, created_at = row[:7]
        return Entry(status, content_type, body, cost_usd, model, provider, created_at, now, row[8])

    def _put(self, db: sqlite3.Connection, key: str, entry: Entry, now: float) -> bool:
        size = entry_size(entry)
        db.execute("BEGIN IMMEDIATE")
        old = db.execute("SELECT size FROM entry WHERE key = ?", (key,)).fetchone()
        entries, total = self._entries, self._bytes
        if old is not None:
            db.execute("DELETE FROM entry WHERE key = ?", (key,))
            entries, total = entries - 1, total - old[0]
        gone, freed = self._evict(db, total, self.max_bytes - size)
        db.execute(
            "INSERT INTO entry (key, created_at, last_used_at, expires_at, size, status, content_type, cost_usd,"
            " model, provider, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                key,
                now,
                now,
                now + self.ttl_s,
                size,
                entry.status,
                entry.content_type,
                entry.cost_usd,
                entry.model,
                entry.provider,
                entry.body,
            ),
        )
        db.execute("COMMIT")
        self._entries, self._bytes = entries - gone + 1, total - freed + size
        return True

    def _evict(self, db: sqlite3.Connection, total: int, limit: int) -> tuple[int, int]:
        """Delete the least recently used entries until `total` is at most `limit`: (entries, bytes) freed."""
        gone = freed = 0
        while total - freed > limit:
            rows = db.execute(
                "SELECT rowid, size FROM entry ORDER BY last_used_at, rowid LIMIT ?", (_EVICT_BATCH,)
            ).fetchall()
            if not rows:
                break
            doomed = []
            for rowid, size in rows:
                if total - freed <= limit:
                    break
                doomed.append(rowid)
                gone, freed = gone + 1, freed + size
            db.execute(f"DELETE FROM entry WHERE rowid IN ({','.join('?' * len(doomed))})", doomed)
        return gone, freed

    def _prune(self, db: sqlite3.Connection, now: float) -> int:
        pruned = 0
        while True:
            rows = db.execute(
                "SELECT rowid, size FROM entry WHERE expires_at <= ? LIMIT ?", (now, _EVICT_BATCH)
            ).fetchall()
            if not rows:
                return pruned
            db.execute(f"DELETE FROM entry WHERE rowid IN ({','.join('?' * len(rows))})", [r[0] for r in rows])
            pruned += len(rows)
            self._entries, self._bytes = self._entries - len(rows), self._bytes - sum(r[1] for r in rows)

    def _shrink(self, db: sqlite3.Connection, shorter_ttl: bool) -> None:
        db.execute("BEGIN IMMEDIATE")
        if shorter_ttl:
            db.execute(
                "UPDATE entry SET expires_at = created_at + ?1 WHERE expires_at > created_at + ?1", (self.ttl_s,)
            )
        gone, freed = self._evict(db, self._bytes, self.max_bytes)
        db.execute("COMMIT")
        self._entries, self._bytes = self._entries - gone, self._bytes - freed
