"""A streamed answer of the substitute's API, fed one SSE event at a time, as the client's API would stream it.

    translator = StreamTranslator("anthropic", "openai", "gpt-4o", include_usage=True, created=int(now))
    for event in parser.feed(chunk):            # picometer.metering.sse.SSEEvent, or anything with .event/.data
        client_bytes += translator.feed(event)  # zero or more whole SSE events in the client's shape
    translator.finished                         # the client's terminal event ([DONE], message_stop, error) is out

Untranslatable from feed means the answer holds something the client's API cannot carry: send `failure(...)`
(the client-shape error event) and end the stream. Memory is bounded: only block and tool indexes are kept.
"""

from __future__ import annotations

from typing import Protocol

from picometer.translate.framing import anthropic_event, openai_event, payload
from picometer.translate.requests import check_shapes
from picometer.translate.stream_to_anthropic import OpenAIToAnthropic
from picometer.translate.stream_to_openai import AnthropicToOpenAI


class Event(Protocol):
    @property
    def event(self) -> str: ...

    @property
    def data(self) -> str: ...


class _Same:
    """Same API on both sides: each event written again as that API writes it."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.finished = False

    def feed(self, name: str, data: str) -> bytes:
        if self.finished:
            return b""
        if self.shape == "openai":
            self.finished = data.strip() == "[DONE]" or "error" in payload(data)
            return openai_event(data)
        event = payload(data)
        self.finished = event.get("type") in ("message_stop", "error")
        return anthropic_event({**event, "type": event.get("type") or name})


class StreamTranslator:
    def __init__(
        self, from_shape: str, to_shape: str, model_asked: str, *, include_usage: bool = False, created: int = 0
    ) -> None:
        """`include_usage`: the OpenAI client asked for `stream_options.include_usage` (it then gets the usage
        chunk); `created`: OpenAI's Unix timestamp for the chunks."""
        check_shapes(from_shape, to_shape)
        self.to_shape = to_shape
        self._inner: _Same | AnthropicToOpenAI | OpenAIToAnthropic
        if from_shape == to_shape:
            self._inner = _Same(to_shape)
        elif to_shape == "openai":
            self._inner = AnthropicToOpenAI(model_asked, include_usage=include_usage, created=created)
        else:
            self._inner = OpenAIToAnthropic(model_asked)

    @property
    def finished(self) -> bool:
        return self._inner.finished

    def feed(self, event: Event) -> bytes:
        """The client-shape bytes for one upstream event; nothing once the stream has finished."""
        if not event.data:
            return b""  # a comment or keep-alive: nothing the client needs
        return self._inner.feed(event.event, event.data)

    def failure(self, message: str, code: str = "api_error") -> bytes:
        """The error event the client's SDK raises on, ending the stream: for an answer that could not cross."""
        self._inner.finished = True
        if self.to_shape == "anthropic":
            return anthropic_event({"type": "error", "error": {"type": code, "message": message}})
        return openai_event({"error": {"message": message, "type": code, "param": None, "code": code}})
