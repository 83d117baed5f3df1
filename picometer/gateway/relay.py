"""Bytes from the provider to the client: whole JSON answers and raw bodies (streams: gateway.streamed). Each relay
writes down what happened in the Outcome and has the record written (`finish`) before the client's last byte, so a
crash can lose a reply, never its record."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable

import httpx

from picometer.asgi import Message, Send
from picometer.gateway import forward
from picometer.gateway.cost_in_body import pieces_with_cost
from picometer.gateway.held_head import HeadHold
from picometer.gateway.inflow import (
    AnswersHeld,
    Framing,
    TooLarge,
    Undecodable,
    counted,
    dropped,
    framing,
    pieces,
    raw_chunks,
    undecoded,
)
from picometer.gateway.refusals import Refusal
from picometer.gateway.settle import Finish, Outcome
from picometer.gateway.translated import Translation
from picometer.metering.answer import AnswerScan
from picometer.metering.batch import BatchMeter
from picometer.metering.json_value import loads
from picometer.metering.usage import Usage, from_response
from picometer.translate import Untranslatable

PARSE_LIMIT = 1_000_000  # answers above this are read from their head and tail, not parsed whole
TRANSLATED_LIMIT = 8_000_000  # a chat answer translated to the client's API: far more than any chat answer
# An answer this size goes to the client in one write (socket buffers hold it): its upstream connection can wait
# until after that; a bigger one is given back first (closing a response costs a few turns of the event loop).
SENT_AT_ONCE = 65_536


CostOf = Callable[[Usage, str | None], float | None]  # (usage, the answer's model) -> USD, as the record prices it


def format_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.10f}".rstrip("0").rstrip(".") or "0"


class Relay:
    """One response on its way to the client."""

    def __init__(
        self,
        o: Outcome,
        send: Send,
        request_id: str,
        finish: Finish,
        elapsed_ms: Callable[[], float],
        cost_of: CostOf | None = None,
        translation: Translation | None = None,
        hold: HeadHold | None = None,
        direct: bool = False,
    ) -> None:
        """`cost_of`: set when the answer carries its cost in its body ([server].cost_in_body, OpenAI-shaped);
        `translation`: set when a substitute answers in another API than the client's; `hold`: the server's
        hold on the response head (gateway.held_head), for a stream's head to be written before its first event;
        `direct`: `send` is the server's own, so a stream's chunks may be written past it (gateway.chunked)."""
        self.o, self._send, self._request_id = o, send, request_id
        self._finish, self._elapsed_ms = finish, elapsed_ms
        self._cost_of, self._translation, self._hold, self._direct = cost_of, translation, hold, direct

    def _start(self, response: httpx.Response, extra: list[tuple[bytes, bytes]], started: bool = True) -> Message:
        """The response head; `started`: it goes to the client now (not held)."""
        headers = forward.response_headers(response.headers)
        headers.append((b"x-picometer-request-id", self._request_id.encode()))
        headers.extend(extra)
        self.o.started_reply = started
        return {"type": "http.response.start", "status": response.status_code, "headers": headers}

    def _bad(self, message: str, failure: str | None = "bad_response") -> Refusal:
        """An answer that cannot be passed on, before its first byte went out: 502, recorded as `failure`."""
        self.o.failure = failure
        return Refusal(502, "upstream_bad_response", message)

    def _first_byte(self) -> None:
        if self.o.ttft_ms is None:
            self.o.ttft_ms = self._elapsed_ms()

    async def json(
        self,
        response: httpx.Response,
        provider: str,
        shape: str | None,
        strict: bool,
        limit: int,
        held: AnswersHeld,
        head: Framing | None = None,
    ) -> None:
        """A whole answer: read (at most `limit` bytes), metered, recorded, then sent with its cost in a header.
        `strict`: a success must be JSON (token endpoints); otherwise JSON is read when it is JSON. When the
        answers held at once would pass `held.limit`, this one is passed on as it arrives instead. `head`: the
        answer's framing, when the caller read it already."""
        head = head or framing(response.headers)
        parts: list[bytes] = []  # kept as they came: no growing buffer copied on every resize
        taken = 0
        if self._translation is not None:
            # A translated answer is read whole, then written anew: bounded by its own limit, not the shared pool.
            held, limit = AnswersHeld(sys.maxsize), min(limit, TRANSLATED_LIMIT)
        # A body as sent (most answers) is read raw and counted here: no generator of ours per answer.
        raw, size = undecoded(response, head), 0
        stream = aiter(raw_chunks(response)) if raw else pieces(response, limit)
        # A small answer of a declared length is whole with its last byte: the body's end is read after the client
        # has the answer (so its connection still goes back to the pool), not before.
        whole_at = head.length if raw and head.length and head.length <= SENT_AT_ONCE else None
        try:
            async for piece in stream:
                if raw:
                    if not piece:
                        continue
                    size += len(piece)
                    if size > limit:
                        raise TooLarge(f"more than {limit} bytes")
                if not held.take(len(piece), taken):
                    held.give(taken)
                    taken = 0
                    rest = counted(stream, limit, size) if raw else stream
                    await self._pass_on(response, rest, [*parts, piece], shape, strict)
                    return
                taken += len(piece)
                parts.append(piece)
                if size == whole_at:
                    break
        except httpx.HTTPError as e:
            raise self._bad(f"provider {provider!r} broke off its answer: {type(e).__name__}") from None
        except TooLarge:
            raise self._bad(
                f"provider {provider!r} answered with more than {limit} bytes "
                f"([providers.{provider}].max_response_bytes); picometer stopped reading"
            ) from None
        except Undecodable as e:
            raise self._bad(f"provider {provider!r} answered with {e}") from None
        finally:
            held.give(taken)
        # All of it read (`taken` bytes): one a slow client may take a while over gives its connection back first.
        if taken > SENT_AT_ONCE:
            await response.aclose()
        await self._whole(response, provider, shape, strict, parts, head.content_type)
        if whole_at is not None and size == whole_at:
            await dropped(stream)  # the body's end (nothing more is expected): its connection serves again

    async def _whole(
        self, response: httpx.Response, provider: str, shape: str | None, strict: bool, parts: list[bytes], ctype: str
    ) -> None:
        self._first_byte()
        if response.is_success and shape and (strict or "json" in ctype):
            self._read(provider, shape, strict, parts, response.status_code, ctype)
        if self._translation is not None:
            try:
                parts = self._translation.whole(parts, response.status_code)
            except Untranslatable as e:
                raise self._bad(f"the answer of provider {provider!r} cannot be given in the API called: {e}") from None
        self.o.complete = True  # the whole answer is in hand
        record = self._finish(write=False)  # priced for the head
        if self._cost_of is not None and self.o.usage is not None and record.status == "ok":
            parts = pieces_with_cost(parts, record.cost_usd)
        extra = [
            (b"content-length", str(sum(map(len, parts))).encode()),
            (b"x-picometer-cost-usd", format_cost(record.cost_usd).encode()),
        ]
        # Written while the client reads the head, still before its body (its last byte). The head's send never
        # waits on a client that reads its answers: uvicorn pauses only past 64 KB of earlier ones left unread.
        await self._send(self._start(response, extra))
        self._finish()
        for piece in parts:
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _read(self, provider: str, shape: str, strict: bool, parts: list[bytes], status: int, ctype: str) -> None:
        """Usage from a whole answer; the parsed answer is dropped on return unless priced per call."""
        size = sum(map(len, parts))
        if size > PARSE_LIMIT and b"".join(parts[:4]).lstrip()[:1] in (b"{", b"["):
            # Big answers (embeddings, images as base64) are read like passed-on ones: no parsed copy in memory.
            scan = AnswerScan()
            for piece in parts:
                scan.feed(piece)
            self._take_scan(scan, shape, strict)
            return
        content = b"".join(parts)
        try:
            parsed = loads(content)
        except ValueError:
            raise self._bad(
                f"provider {provider!r} answered {status} with a body that is not JSON "
                f"({ctype or '?'}, {size} bytes); check its base_url"
            ) from None
        if strict:
            self.o.usage, self.o.response_model = from_response(shape, parsed)
        else:
            self.o.answer = parsed  # images and audio: priced from the whole answer (metering.media)

    def _take_scan(self, scan: AnswerScan, shape: str, strict: bool) -> None:
        usage, model, answer = scan.usage(shape)
        if strict:
            self.o.usage, self.o.response_model = usage, model
        else:
            self.o.answer = answer

    async def _pass_on(
        self,
        response: httpx.Response,
        stream: AsyncIterator[bytes],
        first: list[bytes],
        shape: str | None,
        strict: bool,
    ) -> None:
        """An answer too big to hold now: passed on as it arrives, its usage read from its tail at the end. It
        carries no cost header (the cost is known only after the last byte)."""
        o = self.o
        scan = AnswerScan() if response.is_success and shape else None
        self._first_byte()
        await self._send(self._start(response, []))
        try:
            while first:  # what was held before the bound was reached, let go piece by piece
                await self._pass_piece(first.pop(0), scan)
            async for piece in stream:
                await self._pass_piece(piece, scan)
        except (httpx.HTTPError, TooLarge, Undecodable) as e:
            # Headers went out: the client's answer is cut off, as the provider's was.
            o.break_off("stream_interrupted" if isinstance(e, httpx.HTTPError) else "bad_response")
            return
        if scan is not None and shape is not None:
            self._take_scan(scan, shape, strict)
        o.complete = True
        self._finish()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pass_piece(self, piece: bytes, scan: AnswerScan | None) -> None:
        if piece:
            if scan is not None:
                scan.feed(piece)
            await self._send({"type": "http.response.body", "body": piece, "more_body": True})

    async def raw(self, response: httpx.Response, batch: BatchMeter | None = None) -> None:
        """A body passed on chunk by chunk; batch results are metered line by line on the way."""
        await self._send(self._start(response, []))
        self.o.batch = batch if response.is_success else None
        try:
            async for chunk in pieces(response, None):  # passed on as it comes: nothing accumulates here
                self._first_byte()
                if self.o.batch is not None:
                    self.o.batch.feed(chunk)
                await self._send({"type": "http.response.body", "body": chunk, "more_body": True})
        except (httpx.HTTPError, Undecodable) as e:
            self.o.break_off("timeout" if isinstance(e, httpx.TimeoutException) else "stream_interrupted")
            return
        if self.o.batch is not None:
            self.o.batch.close()
        self.o.complete = True
        self._finish()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})
