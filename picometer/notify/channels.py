"""The alert channels that are on (their URL is set in [notify.*]), what each is told (its min_severity), and
their deliveries on the daemon's loop. Tokens, the Discord webhook URL and the signing secret come from
config.secrets, resolved when the config was loaded, and are never logged."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import structlog

from picometer import __version__
from picometer.clock import Clock
from picometer.config import Config
from picometer.notify import discord, gotify, ntfy, webhook
from picometer.notify.delivery import TIMEOUT_S, Channel, Delivery
from picometer.notify.note import ORDER, Address, Note, wants
from picometer.store.outbox import Outbox

log = structlog.get_logger("picometer.notify")

UNSAVED_MAX = 100  # notes kept in memory while alerts.db cannot be written (disk full)


def channels_on(config: Config) -> tuple[Channel, ...]:
    n = config.notify

    def secret(key: str) -> str:
        found = config.secrets.get(key)
        return found.value if found is not None else ""

    on = []
    if n.ntfy.url:
        address = Address(n.ntfy.url, secret("notify.ntfy.token"))
        on.append(Channel("ntfy", n.ntfy.min_severity, address, ntfy.post, ntfy.FIX))
    if n.gotify.url:
        address = Address(n.gotify.url, secret("notify.gotify.token"))
        on.append(Channel("gotify", n.gotify.min_severity, address, gotify.post, gotify.FIX))
    if discord_url := secret("notify.discord.webhook_url"):
        on.append(Channel("discord", n.discord.min_severity, Address(discord_url), discord.post, discord.FIX))
    if n.webhook.url:
        address = Address(n.webhook.url, secret("notify.webhook.secret"))
        on.append(Channel("webhook", n.webhook.min_severity, address, webhook.post, webhook.FIX))
    return tuple(on)


class Channels:
    def __init__(self, config: Config, outbox: Outbox, clock: Clock, rand: Callable[[], float] = random.random) -> None:
        self.on = channels_on(config)
        self.outbox, self.clock, self._rand = outbox, clock, rand
        self.deliveries: dict[str, Delivery] = {}  # once run() has started
        self._unsaved: deque[tuple[Note, datetime]] = deque(maxlen=UNSAVED_MAX)
        forgotten = outbox.keep_channels(tuple(c.name for c in self.on))
        if forgotten:
            log.info("alerts queued for channels that are now off were forgotten", messages=forgotten)

    def state(self) -> dict[str, dict[str, Any]]:
        """Each channel that is on, for /-/status: the alerts waiting for it, its failed tries in a row, and whether
        it is parked (the service refused its address or token)."""
        out = {}
        for c in self.on:
            d = self.deliveries.get(c.name)
            failures, parked = (d.failures, d.parked) if d is not None else (0, False)
            out[c.name] = {"queued": self.outbox.pending(c.name), "failures_in_a_row": failures, "parked": parked}
        return out

    def tell(self, note: Note, not_before: datetime) -> None:
        """Queue the note for every channel that wants its severity; it goes at `not_before` (quiet hours)."""
        names = tuple(c.name for c in self.on if wants(c.min_severity, note.severity))
        if not names:
            return
        rank = ORDER.index(note.severity) + 1  # a full queue drops the least urgent first
        try:
            self.outbox.put_for(names, note.kind, rank, note.dumps(), note.at, not_before)
        except sqlite3.Error as e:
            log.error("alert not queued for the channels, kept in memory until alerts.db can be written", error=str(e))
            self._unsaved.append((note, not_before))
            return
        for name in names:
            if name in self.deliveries:
                self.deliveries[name].wake()

    def retry_unsaved(self) -> None:
        """Notes that met a full disk: queue them again, in order."""
        pending, self._unsaved = list(self._unsaved), deque(maxlen=UNSAVED_MAX)
        for note, not_before in pending:
            self.tell(note, not_before)

    async def run(self) -> None:
        """Deliver every channel's queue until cancelled (the daemon stops)."""
        if not self.on:
            return
        headers = {"User-Agent": f"picometer/{__version__}"}
        async with httpx.AsyncClient(timeout=TIMEOUT_S, trust_env=False, headers=headers) as client:
            self.deliveries = {c.name: Delivery(c, self.outbox, self.clock, client, self._rand) for c in self.on}
            log.info(
                "alert channels on",
                channels=",".join(self.deliveries),
                queued=sum(self.outbox.pending(name) for name in self.deliveries),
            )
            try:
                await asyncio.gather(*(d.run() for d in self.deliveries.values()))
            finally:
                self.deliveries = {}
