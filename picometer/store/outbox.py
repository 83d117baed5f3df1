"""Alert state in SQLite (`alerts.db`): the outbox of messages to deliver, when each alert key was last
told, mutes, and the actions behind message buttons. Messages survive restarts and outages of Telegram and of
the other channels (ntfy, Gotify, Discord, a webhook): each channel has a queue of its own in one table."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from picometer.store.schema import connect

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE message (
            id INTEGER PRIMARY KEY AUTOINCREMENT, chat INTEGER NOT NULL, created REAL NOT NULL,
            not_before REAL NOT NULL, rank INTEGER NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL,
            buttons TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE alert_key (
            key TEXT PRIMARY KEY, kind TEXT NOT NULL, scope TEXT NOT NULL, first REAL NOT NULL,
            last_told REAL NOT NULL, repeats INTEGER NOT NULL, active INTEGER NOT NULL)""",
        """CREATE TABLE mute (
            kind TEXT NOT NULL, scope TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (kind, scope))""",
        """CREATE TABLE action (
            id INTEGER PRIMARY KEY AUTOINCREMENT, verb TEXT NOT NULL, target TEXT NOT NULL,
            scope TEXT NOT NULL, duration TEXT NOT NULL, created REAL NOT NULL)""",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
    ("ALTER TABLE message ADD COLUMN document TEXT",),  # a file to send, the text as its caption
    (  # a message for a channel besides Telegram: chat 0, the alert as JSON in text
        "ALTER TABLE message ADD COLUMN channel TEXT NOT NULL DEFAULT 'telegram'",
        "CREATE INDEX message_channel ON message (channel, not_before)",
    ),
)
QUEUE_MAX = 500  # messages kept per chat or channel while it is unreachable; the least urgent go first
TELEGRAM = "telegram"  # the channel of messages to Telegram chats
ACTION_KEEP_S = 7 * 86400  # a button older than a week answers "expired"

Button = tuple[str, int]  # label, action id


@dataclass(frozen=True, slots=True)
class Message:
    id: int
    chat: int
    created: datetime
    kind: str
    text: str
    buttons: tuple[Button, ...]
    attempts: int
    document: str | None = None  # a file's path: sent as a document with the text as caption
    channel: str = TELEGRAM


@dataclass(frozen=True, slots=True)
class KeyState:
    key: str
    kind: str
    scope: str
    first: datetime
    last_told: datetime
    repeats: int  # raised again within the cooldown since last told
    active: bool  # an ongoing condition not yet told as over


@dataclass(frozen=True, slots=True)
class Action:
    verb: str  # pause | mute
    target: str  # the workflow, or the alert kind
    scope: str
    duration: str


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


class Outbox:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db, self.moved_aside = connect(path, MIGRATIONS, "alerts")  # moved_aside: a damaged file, kept

    # ---------------------------------------------------------------- messages

    def put(
        self,
        chats: tuple[int, ...],
        kind: str,
        rank: int,
        text: str,
        buttons: tuple[Button, ...],
        now: datetime,
        not_before: datetime,
        document: str | None = None,
    ) -> None:
        """Queue one message per chat; a full queue drops its least urgent, oldest message (counted)."""
        self._put([(TELEGRAM, chat) for chat in chats], kind, rank, text, buttons, now, not_before, document)

    def put_for(
        self, channels: tuple[str, ...], kind: str, rank: int, text: str, now: datetime, not_before: datetime
    ) -> None:
        """Queue one message per channel (ntfy, gotify, ...), bounded like a chat's queue."""
        self._put([(channel, 0) for channel in channels], kind, rank, text, (), now, not_before, None)

    def _put(
        self,
        to: list[tuple[str, int]],
        kind: str,
        rank: int,
        text: str,
        buttons: tuple[Button, ...],
        now: datetime,
        not_before: datetime,
        document: str | None,
    ) -> None:
        row = (now.timestamp(), not_before.timestamp(), rank, kind, text, json.dumps(buttons), document)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for channel, chat in to:
                self._db.execute(
                    "INSERT INTO message (channel, chat, created, not_before, rank, kind, text, buttons, document)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (channel, chat, *row),
                )
                mine = "channel = ? AND chat = ?"
                (count,) = self._db.execute(f"SELECT COUNT(*) FROM message WHERE {mine}", (channel, chat)).fetchone()
                if count > QUEUE_MAX:
                    self._db.execute(
                        f"DELETE FROM message WHERE id = (SELECT id FROM message WHERE {mine}"
                        " ORDER BY rank, id LIMIT 1)",
                        (channel, chat),
                    )
                    self._bump(f"dropped:{chat if channel == TELEGRAM else channel}", 1)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def next_due(self, now: datetime, channel: str = TELEGRAM) -> Message | None:
        """The channel's oldest message that may go now: delivery is in order of raising."""
        row = self._db.execute(
            "SELECT id, chat, created, kind, text, buttons, attempts, document FROM message"
            " WHERE channel = ? AND not_before <= ? ORDER BY id LIMIT 1",
            (channel, now.timestamp()),
        ).fetchone()
        if row is None:
            return None
        buttons = tuple((label, int(action)) for label, action in json.loads(row[5]))
        return Message(row[0], row[1], _dt(row[2]), row[3], row[4], buttons, row[6], row[7], channel)

    def next_time(self, channel: str = TELEGRAM) -> datetime | None:
        """When the channel's earliest held message (quiet hours) may go."""
        (at,) = self._db.execute("SELECT MIN(not_before) FROM message WHERE channel = ?", (channel,)).fetchone()
        return None if at is None else _dt(at)

    def done(self, message_id: int) -> None:
        self._db.execute("DELETE FROM message WHERE id = ?", (message_id,))

    def failed(self, message_id: int) -> None:
        self._db.execute("UPDATE message SET attempts = attempts + 1 WHERE id = ?", (message_id,))

    def pending(self, channel: str = TELEGRAM) -> int:
        (count,) = self._db.execute("SELECT COUNT(*) FROM message WHERE channel = ?", (channel,)).fetchone()
        return int(count)

    def keep_channels(self, channels: tuple[str, ...]) -> int:
        """Forget the queues of channels that are no longer on (Telegram's stay); how many messages went."""
        marks = ",".join("?" * (len(channels) + 1))
        return self._db.execute(f"DELETE FROM message WHERE channel NOT IN ({marks})", (TELEGRAM, *channels)).rowcount

    def take_dropped(self, chat: int | str) -> int:
        """Messages dropped from this chat's (or channel's) full queue since last asked."""
        n = self._get(f"dropped:{chat}")
        if n:
            self._db.execute("DELETE FROM meta WHERE key = ?", (f"dropped:{chat}",))
        return n

    # ---------------------------------------------------------------- alert keys (dedup and recovery)

    def key(self, key: str) -> KeyState | None:
        row = self._db.execute(
            "SELECT key, kind, scope, first, last_told, repeats, active FROM alert_key WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        return KeyState(row[0], row[1], row[2], _dt(row[3]), _dt(row[4]), row[5], bool(row[6]))

    def told(self, key: str, kind: str, scope: str, now: datetime, active: bool) -> None:
        self._db.execute(
            "INSERT INTO alert_key (key, kind, scope, first, last_told, repeats, active) VALUES (?,?,?,?,?,0,?)"
            " ON CONFLICT (key) DO UPDATE SET last_told = excluded.last_told, repeats = 0, active = excluded.active,"
            " first = CASE WHEN alert_key.active THEN alert_key.first ELSE excluded.first END",
            (key, kind, scope, now.timestamp(), now.timestamp(), int(active)),
        )

    def repeated(self, key: str) -> None:
        self._db.execute("UPDATE alert_key SET repeats = repeats + 1 WHERE key = ?", (key,))

    def active(self, kinds: frozenset[str]) -> list[KeyState]:
        rows = self._db.execute(
            "SELECT key, kind, scope, first, last_told, repeats, active FROM alert_key WHERE active = 1 ORDER BY key"
        ).fetchall()
        return [KeyState(r[0], r[1], r[2], _dt(r[3]), _dt(r[4]), r[5], True) for r in rows if r[1] in kinds]

    def over(self, key: str) -> None:
        self._db.execute("UPDATE alert_key SET active = 0 WHERE key = ?", (key,))

    # ---------------------------------------------------------------- mutes

    def mute(self, kind: str, scope: str, until: datetime) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO mute (kind, scope, until) VALUES (?, ?, ?)", (kind, scope, until.timestamp())
        )

    def muted(self, kind: str, scope: str, now: datetime) -> datetime | None:
        """Until when this kind is muted for this scope (a mute with scope "" covers every scope)."""
        (until,) = self._db.execute(
            "SELECT MAX(until) FROM mute WHERE kind = ? AND scope IN ('', ?) AND until > ?",
            (kind, scope, now.timestamp()),
        ).fetchone()
        return None if until is None else _dt(until)

    def unmute(self, kind: str) -> bool:
        return self._db.execute("DELETE FROM mute WHERE kind = ?", (kind,)).rowcount > 0

    # ---------------------------------------------------------------- button actions

    def action(self, verb: str, target: str, scope: str, duration: str, now: datetime) -> int:
        """Remember what a button does; Telegram's 64-byte callback data then carries only the id."""
        self._db.execute("DELETE FROM action WHERE created < ?", (now.timestamp() - ACTION_KEEP_S,))
        cur = self._db.execute(
            "INSERT INTO action (verb, target, scope, duration, created) VALUES (?,?,?,?,?)",
            (verb, target, scope, duration, now.timestamp()),
        )
        return int(cur.lastrowid or 0)

    def find_action(self, action_id: int) -> Action | None:
        row = self._db.execute("SELECT verb, target, scope, duration FROM action WHERE id = ?", (action_id,)).fetchone()
        return None if row is None else Action(*row)

    # ---------------------------------------------------------------- counters

    def _bump(self, key: str, n: int) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?)"
            " ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            (key, n),
        )

    def _get(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def close(self) -> None:
        self._db.close()
