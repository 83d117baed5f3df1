"""Alert policy: each situation told once per cooldown, quiet hours for what can wait, mutes, and an
"over" note when a condition passes. Decides and queues; delivery is the Telegram module's job."""

from __future__ import annotations

import html
import sqlite3
from collections import deque
from collections.abc import Callable
from datetime import datetime, time, timedelta, tzinfo

import structlog

from picometer.alert import ONGOING, Alert, Kind, Severity
from picometer.config import AlertsConfig, Config
from picometer.duration import format_duration
from picometer.store.outbox import Button, Outbox

log = structlog.get_logger("picometer.alerts")

RANK = {Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}
ICON = {Severity.INFO: "ℹ️", Severity.WARNING: "⚠️", Severity.CRITICAL: "🚨"}
UNSAVED_MAX = 100  # alerts kept in memory while alerts.db cannot be written (disk full)
OVER_AFTER_S = 300.0  # a condition is told as over only after it has not held for this long (no flapping)


def esc(text: object) -> str:
    """Text for Telegram HTML: <, > and & escaped; quotes stay readable."""
    return html.escape(str(text), quote=False)


def quiet_until(spec: str, now: datetime, zone: tzinfo) -> datetime | None:
    """The end of the quiet period `now` falls in ("23:00-07:00", local time), or None outside it."""
    if not spec:
        return None
    start_s, end_s = spec.split("-")
    start, end = time.fromisoformat(start_s), time.fromisoformat(end_s)
    local = now.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start == end:
        return None
    inside = start <= t < end if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    # Wall-clock end in the zone; fold=0 picks the first of a repeated hour at DST end.
    return datetime.combine(day, end, tzinfo=zone)


def render(alert: Alert, zone: tzinfo, repeats: int = 0) -> str:
    """Telegram HTML: a bold headline, the message, then the kind and local time; all user text escaped."""
    where = f" · {esc(alert.scope)}" if alert.scope else ""
    lines = [f"{ICON[alert.severity]} <b>{esc(str(alert.kind))}</b>{where}", esc(alert.message)]
    if repeats:
        lines.append(f"(raised {repeats} more times since last told)")
    lines.append(f"<i>{alert.severity} · {alert.at.astimezone(zone):%a %d %b %H:%M %Z}</i>")
    return "\n".join(lines)


class Alerter:
    """Decides whether an alert is told now, later (quiet hours), or not at all (cooldown, muted)."""

    def __init__(
        self,
        config: AlertsConfig,
        zone: tzinfo,
        outbox: Outbox,
        chats: tuple[int, ...] = (),
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config
        self.zone = zone
        self.outbox = outbox
        self.chats = chats  # empty: alerts go to the log and /-/status only
        self._wake = wake
        self._unsaved: deque[Alert] = deque(maxlen=UNSAVED_MAX)
        self._holding: dict[str, datetime] = {}  # key -> last time its condition was seen
        self._since: datetime | None = None  # first settle: keys active before a restart count from here
        self.told: dict[str, int] = {}  # alerts told, by kind (picometer_alerts_sent_total)

    def reconfigure(self, config: Config) -> None:
        self.config, self.chats = config.alerts, alert_chats(config)

    def handle(self, alert: Alert) -> str:
        """ "told", "held" (quiet hours), "cooldown" or "muted"."""
        try:
            return self._handle(alert)
        except sqlite3.Error as e:
            log.error("alert state not written, kept in memory until alerts.db can be written", error=str(e))
            self._unsaved.append(alert)
            return "told"

    def _handle(self, alert: Alert) -> str:
        now = alert.at
        if alert.kind in ONGOING:
            self._holding[alert.key] = now
        if self.outbox.muted(str(alert.kind), alert.scope, now) is not None:
            return "muted"
        state = self.outbox.key(alert.key)
        # An ongoing condition that was told "over" may start again at once; anything else waits out the cooldown.
        if (
            state is not None
            and (now - state.last_told).total_seconds() < self.config.cooldown_s
            and (state.active or alert.kind not in ONGOING)
        ):
            self.outbox.repeated(alert.key)
            return "cooldown"
        repeats = state.repeats if state is not None else 0
        self.outbox.told(alert.key, str(alert.kind), alert.scope, now, alert.kind in ONGOING)
        held = self._queue(alert, render(alert, self.zone, repeats), self._buttons(alert))
        self.told[str(alert.kind)] = self.told.get(str(alert.kind), 0) + 1
        return "held" if held else "told"

    def settle(self, now: datetime) -> list[str]:
        """Tell as over each ongoing alert not raised for OVER_AFTER_S; their keys. Watchers raise an
        ongoing alert on every check while its condition holds."""
        since = self._since = self._since or now
        ended = []
        for state in self.outbox.active(frozenset(str(k) for k in ONGOING)):
            if (now - self._holding.get(state.key, since)).total_seconds() < OVER_AFTER_S:
                continue
            self._holding.pop(state.key, None)
            self.outbox.over(state.key)
            ended.append(state.key)
            lasted = format_duration(now - state.first)
            where = f" for {state.scope}" if state.scope else ""
            text = (
                f"✅ <b>over: {esc(state.kind)}</b>{esc(where)}\n"
                f"The condition raised at {state.first.astimezone(self.zone):%H:%M} has passed (it lasted {lasted})."
            )
            self._queue(Alert(Kind(state.kind), state.key, "", now, state.scope), text, ())
        return ended

    def retry_unsaved(self) -> None:
        """Alerts that met a full disk: try to queue them again, in order."""
        pending, self._unsaved = list(self._unsaved), deque(maxlen=UNSAVED_MAX)
        for alert in pending:
            self.handle(alert)

    def _queue(self, alert: Alert, text: str, buttons: tuple[Button, ...]) -> bool:
        """Into the outbox for every chat; True when quiet hours hold it back."""
        if not self.chats:
            return False
        quiet = (
            None if alert.severity is Severity.CRITICAL else quiet_until(self.config.quiet_hours, alert.at, self.zone)
        )
        self.outbox.put(self.chats, str(alert.kind), RANK[alert.severity], text, buttons, alert.at, quiet or alert.at)
        self._wake()
        return quiet is not None

    def _buttons(self, alert: Alert) -> tuple[Button, ...]:
        if not self.chats or alert.workflow is None:
            return ()
        now = alert.at
        return (
            ("Pause 1h", self.outbox.action("pause", alert.workflow, alert.scope, "1h", now)),
            ("Mute 24h", self.outbox.action("mute", str(alert.kind), alert.scope, "24h", now)),
        )


def alert_chats(config: Config) -> tuple[int, ...]:
    """Where alerts are queued for delivery; none without Telegram (then: the log and /-/status)."""
    return config.telegram.chat_ids if config.telegram.enabled else ()
