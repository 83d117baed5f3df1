"""One channel's queue in the outbox, delivered in order on the daemon's loop: the oldest due message is posted
until the service takes it, and deleted from alerts.db (the ack) before the next is read. A wait the service
asked for is kept; 5xx and an unreachable service are retried with bounded, jittered backoff; a refused address
or token parks the channel (one log line, messages kept); a message the service refuses as it is, is dropped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import structlog

from picometer.clock import Clock
from picometer.notify.note import Address, Note, Post
from picometer.notify.verdict import backoff_s, judge
from picometer.store.outbox import Message, Outbox

log = structlog.get_logger("picometer.notify")

TIMEOUT_S = 10.0  # per request; a slow service never holds the loop, and the next try comes with backoff
READ_MAX = 65536  # bytes of an answer read: enough for any error body
PARK_S = 900.0  # a channel whose address or token is refused is tried again this often (and at the next start)
SNIPPET = 200  # characters of a refusal's body quoted in the log

Build = Callable[[Note, Address, int], Post]


@dataclass(frozen=True, slots=True)
class Channel:
    name: str  # "ntfy" | "gotify" | "discord" | "webhook": its queue in the outbox and its name in logs
    min_severity: str
    address: Address
    build: Build
    fix: str  # what to check when the service refuses the address or token


class Delivery:
    def __init__(
        self,
        channel: Channel,
        outbox: Outbox,
        clock: Clock,
        client: httpx.AsyncClient,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.channel, self.outbox, self.clock, self.client = channel, outbox, clock, client
        self._rand = rand  # backoff jitter
        self.failures = 0  # failed tries in a row
        self.parked = False
        self._dropped = 0  # dropped from a full queue, told with the next message that goes through
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """A new message is queued: an idle channel sends it now (a wait the service asked for is kept)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                wait = await self.deliver_next()
            except Exception:  # a bug must not end this channel's deliveries for good
                log.exception("alert delivery failed", channel=self.channel.name)
                wait = backoff_s(self.failures, self._rand())
                self.failures += 1
            if wait is None:
                await self._idle()
            elif wait > 0:
                await asyncio.sleep(wait)

    async def _idle(self) -> None:
        """Until a wake, or until a message held for quiet hours may go."""
        at = self.outbox.next_time(self.channel.name)
        timeout = None if at is None else max((at - self.clock.now()).total_seconds(), 0.5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def deliver_next(self) -> float | None:
        """Post the oldest message due; None when none is, else the seconds to wait before the next try."""
        name = self.channel.name
        message = self.outbox.next_due(self.clock.now(), name)
        if message is None:
            return None
        self._dropped += self.outbox.take_dropped(name)
        try:
            note = dataclasses.replace(Note.loads(message.text), dropped=self._dropped)
        except (ValueError, KeyError, TypeError):
            log.error("an alert in the outbox cannot be read; dropped", channel=name, id=message.id)
            self.outbox.done(message.id)
            return 0.0
        post = self.channel.build(note, self.channel.address, message.id)
        try:
            status, headers, body = await self._send(post)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError, UnicodeEncodeError) as e:
            # The request itself is malformed (a token with a newline, a bad URL): its text may hold the secret.
            return self._park(message, f"the request cannot be made ({type(e).__name__})")
        except httpx.HTTPError as e:
            return self._retry(message, f"{type(e).__name__}: {self._scrub(str(e))}")
        verdict = judge(status, headers, body, self.clock.now())
        if verdict.outcome == "sent":
            self.outbox.done(message.id)  # the ack: this message is never sent again, even after a restart
            if self.failures or self.parked:
                log.info("alert channel delivering again", channel=name, pending=self.outbox.pending(name))
            self.failures, self.parked, self._dropped = 0, False, 0
            return 0.0
        if verdict.outcome == "wait":
            self.outbox.failed(message.id)
            # A wait of 0 (or a date already past) is no wait: back off as after any failure, never a hot loop.
            wait = max(verdict.wait_s or 0.0, backoff_s(self.failures, self._rand()))
            self.failures += 1
            log.warning("alert channel asked to wait", channel=name, status=status, retry_in_s=round(wait, 1))
            return wait
        if verdict.outcome == "retry":
            return self._retry(message, f"HTTP {status}")
        if verdict.outcome == "park":
            return self._park(message, f"HTTP {status}")
        log.error(
            f"{name} refused an alert as it is (HTTP {status}); dropped, the next goes on",
            channel=name,
            kind=message.kind,
            answer=self._scrub(body[:SNIPPET].decode("utf-8", "replace")),
        )
        self.outbox.done(message.id)
        return 0.0

    async def _send(self, post: Post) -> tuple[int, httpx.Headers, bytes]:
        async with self.client.stream("POST", post.url, content=post.body, headers=post.headers) as r:
            body = b""
            async for chunk in r.aiter_bytes():
                body += chunk
                if len(body) >= READ_MAX:
                    break
            return r.status_code, r.headers, body[:READ_MAX]

    def _retry(self, message: Message, why: str) -> float:
        self.outbox.failed(message.id)
        wait = backoff_s(self.failures, self._rand())
        self.failures += 1
        log.warning(
            "alert channel unreachable, alerts wait in the outbox",
            channel=self.channel.name,
            error=why,
            retry_in_s=round(wait, 1),
            pending=self.outbox.pending(self.channel.name),
        )
        return wait

    def _park(self, message: Message, why: str) -> float:
        self.outbox.failed(message.id)
        if not self.parked:
            name = self.channel.name
            log.error(
                f"{name} refused picometer's alerts ({why}): {self.channel.fix}, then restart picometer. "
                f"Alerts wait in the outbox; tried again every {PARK_S / 60:.0f} minutes",
                channel=name,
            )
        self.parked = True
        return PARK_S

    def _scrub(self, text: str) -> str:
        """Text for the log without the channel's secrets (a Discord webhook URL and an ntfy topic are secrets)."""
        for secret in (self.channel.address.url, self.channel.address.secret):
            if secret:
                text = text.replace(secret, "***")
        return text.replace("\n", " ")
