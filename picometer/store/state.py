"""Operator state in SQLite: pauses (the kill switch), so they survive restarts and expire on time;
each canary probe's run of failures, so a restart neither repeats nor loses a failure alert; and the
last weekly CSV written, so a week missed while down is written at the next start."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from picometer.store.schema import connect

# Each entry moves the schema from version i to i + 1; PRAGMA user_version says where a file is.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE pause (
            workflow TEXT PRIMARY KEY, until REAL, since REAL NOT NULL, by TEXT NOT NULL)""",
    ),
    (
        """CREATE TABLE probe (
            name TEXT PRIMARY KEY, failures INTEGER NOT NULL, first_failed REAL, told INTEGER NOT NULL)""",
    ),
    ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",),  # e.g. the last weekly CSV written
)


class NotSaved(Exception):
    """The change is in force in this process but the state file could not keep it; the message says so."""


@dataclass(frozen=True, slots=True)
class Pause:
    workflow: str
    until: datetime | None  # None: until resumed
    since: datetime
    by: str  # who paused it: cli, http, telegram

    def active(self, now: datetime) -> bool:
        return self.until is None or now < self.until


@dataclass(frozen=True, slots=True)
class Failures:
    """A canary probe's current run of failed checks."""

    count: int = 0
    since: datetime | None = None  # the first failure of the run
    told: bool = False  # canary_failed was raised: the next pass is told as a recovery


def _ts(value: datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


class State:
    """Pauses are read on every call, so they live in a dict; SQLite keeps them across restarts."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db, self.moved_aside = connect(path, MIGRATIONS, "state")  # moved_aside: a damaged file, kept
        self._pauses = {
            row[0]: Pause(row[0], _dt(row[1]), _dt(row[2]) or datetime.now(UTC), row[3])
            for row in self._db.execute("SELECT workflow, until, since, by FROM pause")
        }

    def paused(self, workflow: str, now: datetime) -> Pause | None:
        """Read on every call: memory only (an expired pause is removed by `pauses`, off the request path)."""
        pause = self._pauses.get(workflow)
        return pause if pause is not None and pause.active(now) else None

    def pauses(self, now: datetime) -> list[Pause]:
        """The pauses in force; expired ones are removed from memory and disk."""
        for name in [name for name, p in self._pauses.items() if not p.active(now)]:
            self.resume(name)
        return [self._pauses[name] for name in sorted(self._pauses)]

    def pause(self, workflow: str, until: datetime | None, by: str, now: datetime) -> Pause:
        """In force at once; NotSaved when the state file cannot keep it (it then ends with this process)."""
        pause = Pause(workflow, until, now, by)
        self._pauses[workflow] = pause
        self._save(
            "INSERT OR REPLACE INTO pause (workflow, until, since, by) VALUES (?, ?, ?, ?)",
            (workflow, _ts(until), _ts(now), by),
            "the pause holds until picometer restarts, not after",
        )
        return pause

    def resume(self, workflow: str) -> bool:
        """Lifted at once; NotSaved when the state file cannot forget it (it would come back at a restart)."""
        was = self._pauses.pop(workflow, None) is not None
        self._save("DELETE FROM pause WHERE workflow = ?", (workflow,), "the pause comes back when picometer restarts")
        return was

    def _save(self, sql: str, args: tuple[object, ...], consequence: str) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise NotSaved(f"{self.path} could not be written ({e}): {consequence}") from None

    def probe(self, name: str) -> Failures:
        row = self._db.execute("SELECT failures, first_failed, told FROM probe WHERE name = ?", (name,)).fetchone()
        return Failures() if row is None else Failures(row[0], _dt(row[1]), bool(row[2]))

    def save_probe(self, name: str, failures: Failures) -> None:
        if failures.count == 0:
            self._db.execute("DELETE FROM probe WHERE name = ?", (name,))
            return
        self._db.execute(
            "INSERT OR REPLACE INTO probe (name, failures, first_failed, told) VALUES (?, ?, ?, ?)",
            (name, failures.count, _ts(failures.since), int(failures.told)),
        )

    def meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        self._db.close()
