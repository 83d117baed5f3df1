"""SQLite files with a versioned schema: open, set the pragmas, migrate."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

# Each entry moves a schema from version i to i + 1; PRAGMA user_version says where a file is.
Migrations = tuple[tuple[str, ...], ...]


_CORRUPT = (11, 26)  # SQLITE_CORRUPT, SQLITE_NOTADB: the file is damaged or is no database at all


def connect(path: Path, migrations: Migrations, name: str) -> tuple[sqlite3.Connection, Path | None]:
    """An autocommit WAL connection at the newest schema; refuses a file written by a newer picometer.
    A damaged file is moved aside (returned as the second item) and a fresh one made, so a corrupt file
    never keeps the daemon from starting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _open(path, migrations, name), None
    except sqlite3.DatabaseError as e:
        if not damaged(e):
            raise
    return reopen(path, migrations, name)


def damaged(e: sqlite3.Error) -> bool:
    """The error says the file is damaged or is no database at all."""
    return getattr(e, "sqlite_errorcode", 0) & 0xFF in _CORRUPT


def reopen(path: Path, migrations: Migrations, name: str) -> tuple[sqlite3.Connection, Path]:
    """Move a damaged file (and its WAL) aside and make a fresh one: (the new connection, where it went)."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    for suffix in ("", "-wal", "-shm"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            part.replace(aside.with_name(aside.name + suffix))
    return _open(path, migrations, name), aside


def intact(path: Path) -> bool:
    """SQLite's quick_check of the file as it is on disk (a connection of its own: the daemon's cached pages
    would hide a damaged SD card until they are evicted)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return True  # cannot look (gone, no permission): the daemon's own writes will say more
    try:
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as e:
        if damaged(e):
            return False
        raise
    finally:
        db.close()
    return rows == [("ok",)]


def _open(path: Path, migrations: Migrations, name: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
        migrate(db, migrations, name)
    except BaseException:
        db.close()
        raise
    return db


def migrate(db: sqlite3.Connection, migrations: Migrations, name: str) -> None:
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > len(migrations):
        raise RuntimeError(
            f"{name} database schema {version} is newer than this picometer ({len(migrations)}): upgrade picometer"
        )
    for target in range(version, len(migrations)):
        db.execute("BEGIN IMMEDIATE")
        for statement in migrations[target]:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {target + 1}")
        db.execute("COMMIT")
