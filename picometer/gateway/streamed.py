"""A streamed answer on its way to the client: SSE events (NDJSON lines for Ollama) relayed as they come, metered
on the way, judged by the terminal event. The call is recorded when that event comes, and the client's stream ends
with it."""

from __future__ import annotations

import re

import httpx

from picometer.gateway import chunked
from picometer.gateway.cost_in_body import event_data_with_cost
from picometer.gateway.inflow import (
    Framing,
    TooLarge,
    Undecodable,
    dropped,
    framing,
    pieces,
    raw_chunks,
    undecoded,
)
from picometer.gateway.relay import Relay
from picometer.metering.ndjson import NDJSONParser
from picometer.metering.sse import EventTooLarge, SSEEvent, SSEParser
from picometer.metering.stream_meter import StreamMeter
from picometer.translate import StreamTranslator, Untranslatable

PLAIN_TEXT = re.compile(rb'[^"\\\r\n]*')  # a JSON string's bytes with no quote, no escape, no line end


class StreamRelay(Relay):
    """A Relay for every kind of answer, streams included: what the proxy uses."""

    async def stream(
        self,
        response: httpx.Response,
        shape: str,
        endpoint: str,
        hide_usage: bool,
        expects_terminal: bool,
        limit: int,
        head: Framing | None = None,
    ) -> None:
        """Relay each chunk as it arrives, reading usage from the events on the way. The response starts with
        the first whole event, so a body that is no SSE stream at all (an endless line) still gets a 502; under
        a server with a head hold, its head is written (and held) while that event is on its way. The call is
        recorded the moment its terminal event has gone to the client, and the client's body ends right after it:
        what either side does after cannot undo it."""
        o, hold = self.o, self._hold
        if hold is not None:
            hold.hold()
            await self._send(self._start(response, [], started=False))
        parser: SSEParser | NDJSONParser = NDJSONParser() if shape == "ollama" else SSEParser()
        translator = self._translation.stream() if self._translation is not None and response.is_success else None
        meter = StreamMeter(shape, endpoint)
        hide = hide_usage and response.is_success
        # [server].cost_in_body: the usage event the client sees is written anew, so events go out whole.
        priced = self._cost_of is not None and response.is_success and not hide
        o.expects_terminal = expects_terminal and response.is_success
        held = b""  # bytes before the first whole event (bounded by the parser's event limit)
        send, skim = self._send, meter.skim  # the loop below runs for every chunk of every stream
        put = chunked.NOT_DIRECT  # once the reply has started: its chunks written past the server's h11
        skimmed = parser if translator is None and isinstance(parser, SSEParser) else None
        skimming = False  # the reply has started and the parser holds nothing: a chunk may be skimmed
        # Once skimming has learnt the frame of the stream's text deltas, a chunk framed alike (the same event with
        # other text, no quote or escape in it) is checked here, without a call: the bulk of every stream.
        fast, pre, post, lo, hi, plain = False, b"", b"", 0, 0, PLAIN_TEXT.fullmatch
        # A body as sent (most streams) is read raw and counted here: one layer less for every chunk.
        raw, size = undecoded(response, head or framing(response.headers)), 0
        chunks = aiter(raw_chunks(response)) if raw else pieces(response, limit)
        # Nothing follows these terminal events in their API: the client's stream ends with them, not when the
        # provider gets round to closing its body. Gemini's last chunk is only known by the end of the body.
        ends = o.expects_terminal and translator is None and shape != "gemini"
        try:
            async for chunk in chunks:
                if raw:
                    size += len(chunk)
                    if size > limit:
                        raise TooLarge(f"more than {limit} bytes")
                if fast and chunk.startswith(pre) and chunk.endswith(post) and plain(chunk, lo, len(chunk) - hi):
                    end = len(chunk) - hi  # its text counted in characters, as the parser counts them
                    meter.text_chars += end - lo if chunk.isascii() else len(chunk[lo:end].decode("utf-8", "replace"))
                    if not put(chunk):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
                if skimming and skim(chunk):
                    # Whole events of plain text (most of a stream): passed on as they came, nothing parsed.
                    if not fast and meter.frame is not None:
                        fast, (pre, post) = True, meter.frame
                        lo, hi = len(pre), len(post)
                    if not put(chunk):
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    continue
                if o.ttft_ms is None:  # the first chunk is never skimmed
                    self._first_byte()
                events = parser.feed(chunk)
                if translator is not None:
                    out = b"".join(self._translated(ev, meter, translator) for ev in events)
                elif hide or priced:
                    out = b"".join(self._relayed(ev, meter, hide) for ev in events)
                else:
                    out = chunk
                    for ev in events:
                        meter.observe(ev)
                if ends and meter.terminal:
                    # The terminal event goes out, the call is recorded while the client reads it, and the body ends
                    # at once: nothing of the provider's after it reaches the client, nor does it wait for that.
                    if o.started_reply:
                        if not put(out):
                            await send({"type": "http.response.body", "body": out, "more_body": True})
                    else:
                        await self._begin(response, held + out)
                    self._after(meter)
                    o.complete = True
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    await dropped(chunks)
                    return
                if not o.started_reply:
                    if not events:
                        held += out
                        continue
                    out, held = held + out, b""
                    await self._begin(response, out)
                    put = chunked.writer(self._hold) if self._direct else put
                elif out and not put(out):
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                self._after(meter)
                skimming = skimmed is not None and o.started_reply and skimmed.idle  # a skimmed chunk keeps it so
                fast = fast and skimming
            tail = held
            for ev in parser.close():
                if translator is not None:
                    tail += self._translated(ev, meter, translator)
                elif hide or priced:
                    tail += self._relayed(ev, meter, hide)
                else:
                    meter.observe(ev)
            if not o.started_reply:
                await self._begin(response, tail)
            elif tail:
                await send({"type": "http.response.body", "body": tail, "more_body": True})
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

    async def _begin(self, response: httpx.Response, first: bytes) -> None:
        """The reply starts: its head and its first event (in one write when the head was held)."""
        if self._hold is None:
            await self._send(self._start(response, []))
        if first:
            await self._send({"type": "http.response.body", "body": first, "more_body": True})
        if self._hold is not None:
            self._hold.release()
            self.o.started_reply = True

    def _translated(self, ev: SSEEvent, meter: StreamMeter, translator: StreamTranslator) -> bytes:
        """One upstream event metered as it came, and what the client gets of it in its own API."""
        meter.observe(ev)
        try:
            return translator.feed(ev)
        except Untranslatable as e:
            self.o.stream_error = self.o.stream_error or "untranslatable"
            return translator.failure(f"the answer cannot be given in the API called: {e}")

    def _relayed(self, ev: SSEEvent, meter: StreamMeter, hide: bool) -> bytes:
        """One event as the client gets it, read by the meter on the way: the usage chunk picometer asked for
        hidden; with cost_in_body, the usage the client sees carrying `cost`."""
        was_terminal = meter.terminal
        if meter.observe(ev):  # a chat or completions usage chunk
            return b"" if hide else self._with_cost(ev, meter, ("usage",))
        if meter.endpoint == "responses" and meter.terminal and not was_terminal and not meter.error:
            return self._with_cost(ev, meter, ("response", "usage"))  # response.completed (or .incomplete)
        return ev.raw

    def _with_cost(self, ev: SSEEvent, meter: StreamMeter, path: tuple[str, ...]) -> bytes:
        """The event with the cost of the usage it reports, priced as the record (finished with this same usage
        at the stream's end) will be; as it came when there is no price or no such usage."""
        if self._cost_of is None or meter.usage is None or "\n" in ev.data:  # data split over lines: left as is
            return ev.raw
        cost = self._cost_of(meter.usage, meter.model)
        data = None if cost is None else event_data_with_cost(ev.data, path, cost)
        old = ev.data.encode()
        at = ev.raw.rfind(old)  # the event's one data line; its other lines (event:, id:) stay as they came
        if data is None or at < 0:
            return ev.raw
        return ev.raw[:at] + data.encode() + ev.raw[at + len(old) :]

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
