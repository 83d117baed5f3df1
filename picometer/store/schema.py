"""SQLite files with a versioned schema: open, set the pragmas, migrate."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# Each entry moves a schema from version i to i + 1; PRAGMA user_version says where a file is.
Migrations = tuple[tuple[str, ...], ...]


def connect(path: Path, migrations: Migrations, name: str) -> sqlite3.Connection:
    """An autocommit WAL connection at the newest schema; refuses a file written by a newer picometer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    migrate(db, migrations, name)
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
