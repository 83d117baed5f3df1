"""What a channel is told about an alert: its fields and plain text (no Telegram HTML), kept in the outbox as
JSON so it waits out outages and restarts; and the HTTP request a service is sent (`Post`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from picometer.alert import Alert, Severity

ORDER = (Severity.INFO, Severity.WARNING, Severity.CRITICAL)  # min_severity lets through its level and above
ICON = {Severity.INFO: "ℹ️", Severity.WARNING: "⚠️", Severity.CRITICAL: "🚨"}
MESSAGE_MAX = 4000  # characters of an alert's message that go out; the services take at most this much
CUT = "… (cut)"  # the end of a text shortened to fit a service's limit

Amounts = dict[str, float | str]


def wants(min_severity: str, severity: Severity) -> bool:
    """A channel with this min_severity is told alerts of this severity."""
    return ORDER.index(severity) >= ORDER.index(Severity(min_severity))


@dataclass(frozen=True, slots=True)
class Note:
    kind: str
    severity: Severity
    key: str
    scope: str  # "global", "workflow:NAME", "provider:NAME", "probe:NAME" or ""
    message: str
    at: datetime  # when it was raised
    when: str  # the same for people, in the budget timezone: "Mon 23 Nov 13:00 CET"
    over: bool = False  # the condition it told of has passed
    amounts: Amounts = field(default_factory=dict)  # budget alerts: period, spent_usd, limit_usd, threshold
    dropped: int = 0  # older, less urgent notes dropped from this channel's full queue (counted, not stored)

    @property
    def workflow(self) -> str | None:
        return self.scope.removeprefix("workflow:") if self.scope.startswith("workflow:") else None

    @property
    def title(self) -> str:
        what = f"over: {self.kind}" if self.over else self.kind
        return f"{what} · {self.scope}" if self.scope else what

    def text(self) -> str:
        """The message for people: what happened, then how bad and when."""
        lines = [self.message]
        if self.dropped:
            lines.append(f"({self.dropped} older, less urgent alerts were dropped while this channel was unreachable)")
        lines.append(f"{self.severity} · {self.when}")
        return "\n".join(lines)

    def dumps(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "severity": str(self.severity),
                "key": self.key,
                "scope": self.scope,
                "message": self.message,
                "at": self.at.isoformat(),
                "when": self.when,
                "over": self.over,
                "amounts": self.amounts,
            },
            ensure_ascii=False,
        )

    @classmethod
    def loads(cls, text: str) -> Note:
        """Raises ValueError (or KeyError, TypeError) for a row this version cannot read."""
        d: dict[str, Any] = json.loads(text)
        return cls(
            str(d["kind"]),
            Severity(d["severity"]),
            str(d["key"]),
            str(d["scope"]),
            str(d["message"]),
            datetime.fromisoformat(d["at"]),
            str(d["when"]),
            bool(d["over"]),
            dict(d["amounts"]),
        )


def note_for(alert: Alert, zone: tzinfo, over: bool = False, amounts: Amounts | None = None) -> Note:
    return Note(
        str(alert.kind),
        alert.severity,
        alert.key,
        alert.scope,
        alert.message[:MESSAGE_MAX],
        alert.at,
        f"{alert.at.astimezone(zone):%a %d %b %H:%M %Z}",
        over,
        dict(amounts or {}),
    )


@dataclass(frozen=True, slots=True)
class Address:
    """Where a channel posts, and its token or signing secret (never logged)."""

    url: str
    secret: str = ""

    def __repr__(self) -> str:
        return "Address('***')"  # a Discord webhook URL and an ntfy topic URL are secrets too


@dataclass(frozen=True, slots=True)
class Post:
    """One HTTP POST as the service documents it."""

    url: str
    headers: dict[str, str]
    body: bytes

    def __repr__(self) -> str:
        return f"Post({len(self.body)} bytes)"  # the URL and headers may carry a secret


def cut(text: str, limit: int, size: Callable[[str], int] = len) -> str:
    """`text` shortened to at most `limit` by `size` (characters, bytes, ...), ending in CUT when shortened."""
    if size(text) <= limit:
        return text
    lo, hi = 0, len(text)  # the longest prefix that fits with the marker
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if size(text[:mid] + CUT) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo] + CUT


def utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8"))


def utf16_units(text: str) -> int:
    """Length as JavaScript counts it (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2
