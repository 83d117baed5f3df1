"""Incremental newline-delimited JSON (Ollama's streams): bytes in any split, one event per line, raw bytes kept.

It speaks the SSE parser's interface (`feed`, `close`, events with `data` and `raw`), so the relay and the
stream meter handle both framings alike.
"""

from __future__ import annotations

from picometer.metering.sse import MAX_EVENT_BYTES, EventTooLarge, SSEEvent


class NDJSONParser:
    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        self._buf = b""

    def feed(self, chunk: bytes, *, final: bool = False) -> list[SSEEvent]:
        data = self._buf + chunk if self._buf else chunk
        events: list[SSEEvent] = []
        pos = 0
        while (end := data.find(b"\n", pos)) >= 0:
            events.append(_event(data[pos : end + 1]))
            pos = end + 1
        self._buf = data[pos:]
        if len(self._buf) > self.max_event_bytes:
            raise EventTooLarge(f"a line of more than {self.max_event_bytes} bytes")
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream: a last line without its newline is still a line."""
        rest, self._buf = self._buf, b""
        return [_event(rest)] if rest else []


def _event(raw: bytes) -> SSEEvent:
    return SSEEvent("", raw.decode("utf-8", errors="replace").strip(), raw)
