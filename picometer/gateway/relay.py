"""Bytes from the provider to the client: whole JSON answers, raw bodies, and SSE streams judged by their
terminal event. Each relay writes down what happened in the Outcome and has the record written (`finish`)
before the client's last byte, so a crash can lose a reply, never its record."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httpx

from picometer.gateway import forward
from picometer.gateway.inflow import TooLarge, Undecodable, pieces
from picometer.gateway.refusals import Refusal
from picometer.gateway.settle import Outcome
from picometer.metering.batch import BatchMeter
from picometer.metering.sse import EventTooLarge, SSEParser
from picometer.metering.usage import StreamMeter, from_response
from picometer.record import Record

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def format_cost(cost: float | None) -> str:
    return "unknown" if cost is None else f"{cost:.10f}".rstrip("0").rstrip(".") or "0"


class Relay:
    """One response on its way to the client."""

    def __init__(
        self,
        o: Outcome,
        send: Send,
        request_id: str,
        finish: Callable[[], Record],
        elapsed_ms: Callable[[], float],
    ) -> None:
        self.o, self._send, self._request_id = o, send, request_id
        self._finish, self._elapsed_ms = finish, elapsed_ms

    def _start(self, response: httpx.Response, extra: list[tuple[bytes, bytes]]) -> Message:
        headers = forward.response_headers(response.headers)
        headers.append((b"x-picometer-request-id", self._request_id.encode()))
        headers.extend(extra)
        self.o.started_reply = True
        return {"type": "http.response.start", "status": response.status_code, "headers": headers}

    def _bad(self, message: str, failure: str | None = "bad_response") -> Refusal:
        """An answer that cannot be passed on, before its first byte went out: 502, recorded as `failure`."""
        self.o.failure = failure
        return Refusal(502, "upstream_bad_response", message)

    def _first_byte(self) -> None:
        if self.o.ttft_ms is None:
            self.o.ttft_ms = self._elapsed_ms()

    async def json(self, response: httpx.Response, provider: str, shape: str | None, strict: bool, limit: int) -> None:
        """A whole answer: read (at most `limit` bytes), metered, recorded, then sent in one piece with its cost
        in a header. `strict`: a success must be JSON (token endpoints); otherwise JSON is read when it is JSON."""
        o = self.o
        try:
            content = b"".join([piece async for piece in pieces(response, limit)])
        except httpx.HTTPError as e:
            raise self._bad(f"provider {provider!r} broke off its answer: {type(e).__name__}") from None
        except TooLarge:
            raise self._bad(
                f"provider {provider!r} answered with more than {limit} bytes "
                f"([providers.{provider}].max_response_bytes); picometer stopped reading"
            ) from None
        except Undecodable as e:
            raise self._bad(f"provider {provider!r} answered with {e}") from None
        self._first_byte()
        ctype = response.headers.get("content-type", "")
        if response.is_success and shape and (strict or "json" in ctype):
            try:
                parsed = json.loads(content)
            except ValueError:
                raise self._bad(
                    f"provider {provider!r} answered {response.status_code} with a body that is not JSON "
                    f"({ctype or '?'}, {len(content)} bytes); check its base_url"
                ) from None
            if strict:
                o.usage, o.response_model = from_response(shape, parsed)
            else:
                o.answer = parsed  # images and audio: priced from the whole answer (metering.media)
        o.complete = True  # the whole answer is in hand and goes out in one piece
        record = self._finish()
        extra = [
            (b"content-length", str(len(content)).encode()),
            (b"x-picometer-cost-usd", format_cost(record.cost_usd).encode()),
        ]
        await self._send(self._start(response, extra))
        await self._send({"type": "http.response.body", "body": content, "more_body": False})

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

    async def stream(
        self,
        response: httpx.Response,
        shape: str,
        endpoint: str,
        hide_usage: bool,
        expects_terminal: bool,
        limit: int,
    ) -> None:
        """Relay each chunk as it arrives, reading usage from the events on the way. The response starts with
        the first whole event, so a body that is no SSE stream at all (an endless line) still gets a 502. The
        call is recorded the moment its terminal event has gone to the client: what either side does after
        cannot undo it."""
        o = self.o
        parser = SSEParser()
        meter = StreamMeter(shape, endpoint)
        hide = hide_usage and response.is_success
        o.expects_terminal = expects_terminal and response.is_success
        held = b""  # bytes before the first whole event (bounded by the parser's event limit)
        try:
            async for chunk in pieces(response, limit):
                self._first_byte()
                events = parser.feed(chunk)
                if hide:
                    out = b"".join(ev.raw for ev in events if not meter.observe(ev))
                else:
                    out = chunk
                    for ev in events:
                        meter.observe(ev)
                if not o.started_reply:
                    if not events:
                        held += out
                        continue
                    out, held = held + out, b""
                    await self._send(self._start(response, []))
                if out:
                    await self._send({"type": "http.response.body", "body": out, "more_body": True})
                self._after(meter)
            tail = held
            for ev in parser.close():
                if not meter.observe(ev) and hide:
                    tail += ev.raw
            if not o.started_reply:
                await self._send(self._start(response, []))
            if tail:
                await self._send({"type": "http.response.body", "body": tail, "more_body": True})
            self._after(meter)
        except httpx.HTTPError as e:
            # The provider cut the stream: leave the client's unfinished too, so it sees a broken stream.
            o.break_off("timeout" if isinstance(e, httpx.TimeoutException) else "stream_interrupted")
            if not o.started_reply:
                raise self._bad("the provider broke off its stream before any event", o.cut) from None
            return
        except (TooLarge, EventTooLarge, Undecodable) as e:
            o.break_off("bad_response")
            if not o.started_reply:
                raise self._bad(f"the provider's stream is not one an API sends: {e}") from None
            return  # cut it for the client, as the provider's own cut would be
        finally:
            self._fold(meter)
        o.complete = True
        self._finish()
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    def _fold(self, meter: StreamMeter) -> None:
        o = self.o
        o.usage, o.text_chars = meter.usage, meter.text_chars
        o.stream_error = o.stream_error or meter.error
        o.response_model = o.response_model or meter.model

    def _after(self, meter: StreamMeter) -> None:
        """Once the terminal event has been handed to the client, the call is complete: record it now."""
        if meter.terminal and not self.o.terminal and self.o.expects_terminal:
            self._fold(meter)
            self.o.terminal = True
            self._finish()
