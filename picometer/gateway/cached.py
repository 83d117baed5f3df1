"""The response cache on the request path ([cache], picometer.cache): a hit answered from disk, and a miss's
answer caught on its way to the client so the next identical call is free. Store calls run on a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from picometer.asgi import Message, Send
from picometer.cache.store import CacheStore, Entry
from picometer.clock import Clock
from picometer.gateway.admin import respond
from picometer.gateway.cost_in_body import answer_with_cost
from picometer.gateway.inflow import AnswersHeld
from picometer.gateway.settle import Admitted, Outcome


class Capture:
    """Wraps the client's `send`: keeps the status, content type and body bytes the client got, up to `limit`
    and within the answers held in memory at once (`held`, shared with the relay), and calls `keep` with them
    just before the answer's last byte goes out (the last piece of a body with a length, or the end of a
    stream), so a repeat sent the moment the first answer is in finds it stored."""

    def __init__(self, send: Send, held: AnswersHeld, limit: int, keep: Callable[[Capture], Awaitable[None]]) -> None:
        self._send, self._held, self.limit, self._keep = send, held, limit, keep
        self.status = 0
        self.content_type = ""
        self.length: int | None = None  # the Content-Length the client was told, when it was
        self.parts: list[bytes] = []
        self.size = 0
        self.ended = False  # the client has (or is about to have) the whole answer
        self.too_big = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    self.content_type = value.decode("latin-1")
                elif name.lower() == b"content-length" and value.isdigit():
                    self.length = int(value)
        elif message["type"] == "http.response.body" and not self.too_big and not self.ended:
            body = message.get("body", b"")
            if self.size + len(body) > self.limit or not self._held.take(len(body), self.size):
                self.too_big = True  # it would not be stored, or memory is short: hold nothing
                self.release()
            elif body:
                self.size += len(body)
                self.parts.append(body)
            # A client told the length is done reading at the last byte, before the closing empty message.
            full = self.length is not None and self.size >= self.length
            self.ended = full or not message.get("more_body", False)
            if self.ended and not self.too_big:
                await self._keep(self)
                self.release()
        await self._send(message)

    def release(self) -> None:
        """Give back what was held (once the answer is kept, or dropped, or the call ended otherwise)."""
        self._held.give(self.size)
        self.size, self.parts = 0, []

    def entry(self, cost_usd: float | None, model: str, provider: str) -> Entry | None:
        """What to store: a whole 2xx answer the client received to its end; None otherwise."""
        if self.too_big or not self.ended or not 200 <= self.status < 300:
            return None
        return Entry(self.status, self.content_type, b"".join(self.parts), cost_usd, model, provider)


def keeper(cache: CacheStore, clock: Clock, req: Admitted, o: Outcome) -> Callable[[Capture], Awaitable[None]]:
    async def keep(capture: Capture) -> None:
        """A miss's answer, stored for the next identical call when it came whole, ok, and from the model
        asked (its record is written before the last byte)."""
        rec = o.record
        if rec is None or rec.status != "ok" or o.served is not None or req.cache_key is None:
            return
        entry = capture.entry(rec.cost_usd, rec.model or "", rec.provider)
        if entry is not None:
            await asyncio.to_thread(cache.put, req.cache_key, entry, clock.now())

    return keep


async def replay(send: Send, hit: Entry, request_id: str, zero_cost_in_body: bool) -> None:
    """A stored answer as the client first got it (an SSE stream replays as one); it costs nothing now."""
    body = hit.body
    if zero_cost_in_body:
        body = answer_with_cost(body, 0.0) or body  # [server].cost_in_body: this answer's usage.cost is 0
    extra = [(b"x-picometer-cost-usd", b"0"), (b"x-picometer-cache", b"hit")]
    await respond(send, hit.status, body, request_id, extra, hit.content_type.encode("latin-1"))
