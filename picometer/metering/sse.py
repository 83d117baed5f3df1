"""Incremental Server-Sent Events parser: bytes in any split, whole events out, raw bytes kept."""

from __future__ import annotations

import re

from picometer.frozen import frozen

_EOL = re.compile(rb"\r\n|\r|\n")


@frozen
class SSEEvent:
    event: str  # "" when the stream gave no event: field
    data: str
    raw: bytes  # exactly the bytes that carried this event, blank line included


MAX_EVENT_BYTES = 1_000_000  # an event, or a line still waiting for its end, larger than this is refused


class EventTooLarge(ValueError):
    """An SSE event (or a line without its end) over the bound: the stream is not one an API sends."""


class SSEParser:
    """Feed it chunks as they arrive; it returns each event once its closing blank line is in. Memory and
    work per byte stay bounded: a stream that never ends its event is refused at `max_event_bytes`."""

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = bytearray()
        self._raw = bytearray()
        self._event = ""
        self._data: list[str] = []
        self._pending = False

    @property
    def idle(self) -> bool:
        """Between events: nothing of an unfinished event is held."""
        return not self._buf and not self._raw and not self._pending

    def feed(self, chunk: bytes, *, final: bool = False) -> list[SSEEvent]:
        if not self._pending and not self._raw and b"\r" not in chunk and b"\r" not in self._buf:
            one_line = chunk.endswith(b"\n\n") and chunk.find(b"\n") == len(chunk) - 2
            if one_line and not self._buf and chunk.startswith(b"data:"):
                return [self._one_data_event(chunk)]
            events = self._feed_lf(chunk)
        else:
            events = self._feed_lines(chunk, final)
        if len(self._buf) + len(self._raw) > self.max_event_bytes:
            raise EventTooLarge(f"an event of more than {self.max_event_bytes} bytes")
        return events

    def _feed_lines(self, chunk: bytes, final: bool) -> list[SSEEvent]:
        self._buf += chunk
        events: list[SSEEvent] = []
        pos = 0
        buf = self._buf
        while True:
            m = _EOL.search(buf, pos)
            if m is None:
                break
            # A lone CR at the end may be the first half of CRLF: wait for more bytes.
            if m.group() == b"\r" and m.end() == len(buf) and not final:
                break
            line = bytes(buf[pos : m.start()])
            self._raw += buf[pos : m.end()]
            pos = m.end()
            if line:
                self._field(line)
                self._pending = True
            elif self._pending:
                events.append(self._dispatch())
            # Extra blank lines stay in _raw and travel with the next event, so no byte is lost.
        del buf[:pos]
        return events

    def _feed_lf(self, chunk: bytes) -> list[SSEEvent]:
        """The common case, at an event boundary with LF line ends only: whole events cut at each blank line."""
        data = bytes(self._buf) + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        pos, n = 0, len(data)
        while True:
            start = pos
            while start < n and data[start] == 0x0A:  # extra blank lines travel with the next event
                start += 1
            end = data.find(b"\n\n", start)
            if end < 0:
                break
            for line in data[start:end].split(b"\n"):
                self._field(line)
            events.append(SSEEvent(self._event, "\n".join(self._data), data[pos : end + 2]))
            self._event, self._data = "", []
            pos = end + 2
        self._raw += data[pos:start]  # blank lines with no event after them yet
        self._buf = bytearray(data[start:])
        return events

    @staticmethod
    def _one_data_event(chunk: bytes) -> SSEEvent:
        """A chunk that is one whole event of one data line (most chunks of a stream): no line loop."""
        value = chunk[5:-2].decode("utf-8", errors="replace")
        return SSEEvent("", value[1:] if value.startswith(" ") else value, chunk)

    def close(self) -> list[SSEEvent]:
        """End of stream: a trailing event without its blank line is still an event."""
        events = self.feed(b"", final=True)
        if self._buf:
            self._field(bytes(self._buf))
            self._raw += self._buf
            self._buf.clear()
            self._pending = True
        if self._pending or self._raw:
            events.append(self._dispatch())
        return events

    def _field(self, line: bytes) -> None:
        text = line.decode("utf-8", errors="replace")
        if text.startswith(":"):
            return
        name, _, value = text.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value

    def _dispatch(self) -> SSEEvent:
        event = SSEEvent(self._event, "\n".join(self._data), bytes(self._raw))
        self._event, self._data, self._pending = "", [], False
        self._raw.clear()
        return event
