"""Alerts raised anywhere (the request path, the tick, the canary, a budget event) told the same way: through the
alert policy, logged, kept for /-/status and queued for the chats and the other channels (ntfy, Gotify, Discord,
a webhook). And the alerts about picometer's own storage: a disk running low, records dropped, a damaged database
replaced."""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import Iterable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import structlog

from picometer.alert import Alert, Kind, Severity
from picometer.clock import Clock
from picometer.config import Config
from picometer.duration import format_duration
from picometer.metering.budget import Event, event_message, to_pico, to_usd
from picometer.notify.channels import Channels
from picometer.notify.note import Amounts, note_for
from picometer.store.rollups import Rollups
from picometer.store.usagelog import UsageLog
from picometer.watch.alerts import Alerter, quiet_until

log = structlog.get_logger("picometer.daemon")

ALERTS_KEPT = 50  # recent alerts shown in /-/status


class Teller:
    def __init__(
        self,
        alerter: Alerter,
        clock: Clock,
        zone: tzinfo,
        rollups: Rollups,
        usage_log: UsageLog,
        min_free_mb: int,
        channels: Channels | None = None,
    ) -> None:
        self.alerter, self.clock, self.zone, self.channels = alerter, clock, zone, channels
        self.rollups, self.usage_log, self.min_free_mb = rollups, usage_log, min_free_mb
        self.recent: collections.deque[Alert] = collections.deque(maxlen=ALERTS_KEPT)
        self._background: set[asyncio.Task[None]] = set()  # alerts being told off the request path
        self._dropping = False  # records dropped: told when an episode starts
        self._dropped_seen = 0

    def reconfigure(self, config: Config) -> None:
        self.min_free_mb = config.storage.min_free_mb

    def alert(self, alert: Alert, amounts: Amounts | None = None) -> None:
        """Through the alert policy; what is told is logged, kept for /-/status and queued for Telegram and the
        channels (`amounts`: a budget alert's numbers, for the webhook's JSON)."""
        try:
            outcome = self.alerter.handle(alert)
        except Exception:  # an alert must never fail the call that raised it
            log.exception("alert handling failed", kind=str(alert.kind), message=alert.message)
            outcome = "told"
        if outcome in ("told", "held"):
            log.warning(str(alert.kind), severity=str(alert.severity), scope=alert.scope, message=alert.message)
            self.recent.append(alert)
            self._to_channels(alert, amounts=amounts)

    def over(self, key: str, now: datetime) -> None:
        """An ongoing condition the alert policy has told as over: the channels hear it too."""
        state = self.alerter.outbox.key(key)
        if state is None:
            return
        lasted = format_duration(now - state.first)
        message = f"The condition raised at {state.first.astimezone(self.zone):%H:%M} has passed (it lasted {lasted})."
        self._to_channels(Alert(Kind(state.kind), key, message, now, state.scope), over=True)

    def _to_channels(self, alert: Alert, over: bool = False, amounts: Amounts | None = None) -> None:
        """Queued for ntfy, Gotify, Discord and the webhook; held like Telegram's in quiet hours unless critical."""
        if self.channels is None or not self.channels.on:
            return
        try:
            quiet = None
            if alert.severity is not Severity.CRITICAL:
                quiet = quiet_until(self.alerter.config.quiet_hours, alert.at, self.zone)
            self.channels.tell(note_for(alert, self.zone, over, amounts), quiet or alert.at)
        except Exception:  # an alert must never fail the call that raised it
            log.exception("alert not queued for the channels", kind=str(alert.kind))

    def alert_later(self, alert: Alert) -> None:
        """An alert raised on the request path: handled once the request has moved on (the outbox is SQLite)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.alert(alert)
            return
        loop.call_soon(self.alert, alert, context=contextvars.Context())

    def budget_event(self, event: Event) -> None:
        """A threshold crossed or a cap's first refusal, raised on the request path: told from a task of its own,
        with the pace read on a worker thread (the rollups lock may be held by a flush)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.tell_budget(event, self.rollups.pace(event.at, event.cap.workflow))
            return
        task = loop.create_task(self._tell_budget_later(event), context=contextvars.Context())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _tell_budget_later(self, event: Event) -> None:
        self.tell_budget(event, await asyncio.to_thread(self.rollups.pace, event.at, event.cap.workflow))

    def tell_budget(self, event: Event, pace_usd: float) -> None:
        pace = to_pico(pace_usd)
        kind = {"threshold": Kind.BUDGET_THRESHOLD, "downgrade": Kind.BUDGET_DOWNGRADE}.get(
            event.kind, Kind.BUDGET_BLOCKED
        )
        key = f"{kind}:{event.cap.name}" + (f":{event.threshold:g}" if event.threshold is not None else "")
        amounts: Amounts = {
            "period": event.cap.period,
            "spent_usd": to_usd(event.spent),
            "limit_usd": to_usd(event.cap.limit),
        }
        if event.threshold is not None:
            amounts["threshold"] = event.threshold
        self.alert(Alert(kind, key, event_message(event, pace, self.zone), event.at, event.cap.scope), amounts)

    def watch_usage_log(self) -> None:
        """Disk low and dropped records, told when they start (the log says when they stop)."""
        log_, now = self.usage_log, self.clock.now()
        if log_.disk_low:  # raised on every check while it lasts; the policy tells it once, then "over"
            self.alert(
                Alert(
                    Kind.DISK_LOW,
                    "disk_low",
                    f"Less than {self.min_free_mb} MB free on {log_.dir}: raw usage lines are being "
                    "dropped; the rollups still count every call. Free some space on that disk.",
                    now,
                )
            )
        dropping = log_.dropped > self._dropped_seen
        if dropping and not self._dropping:
            self.alert(
                Alert(
                    Kind.RECORDS_DROPPED,
                    "records_dropped",
                    f"{log_.dropped - self._dropped_seen} usage log lines dropped ({log_.dropped} since start): "
                    "the disk is full or low. Totals stay right in the rollups; free space to keep the raw log.",
                    now,
                )
            )
        self._dropping, self._dropped_seen = dropping, log_.dropped

    def rebuilt(self, stores: Iterable[tuple[str, Any]]) -> None:
        """A damaged SQLite file was moved aside at start and a fresh one made: say what that means."""
        for name, store in stores:
            if store.moved_aside is not None:
                self.damaged(name, store.moved_aside)

    def damaged(self, name: str, aside: Path) -> None:
        what = {
            "rollups": "the totals were rebuilt from the usage log (calls older than the log's retention are gone "
            "from reports)",
            "state": "pauses, canary failure runs and the last weekly CSV mark were lost: check `picometer status` "
            "and pause again what should stay paused",
            "alerts": "alerts queued for delivery, mutes and cooldowns were lost",
        }
        message = (
            f"The {name} database was damaged and has been replaced by a fresh one; {what[name]}. "
            f"The damaged file is kept as {aside} (remove it once you are done with it)."
        )
        log.error("damaged database replaced", database=name, kept_as=str(aside))
        self.alert(Alert(Kind.DATABASE_REBUILT, f"database_rebuilt:{name}", message, self.clock.now()))
