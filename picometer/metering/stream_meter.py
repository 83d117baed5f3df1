"""Usage, the model and the terminal event of a streamed answer, read event by event as it passes. Pure."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from picometer.metering.json_value import loads
from picometer.metering.sse import SSEEvent
from picometer.metering.usage import (
    MAX_OUTPUT_ITEMS,
    Usage,
    anthropic_usage,
    dig,
    gemini_usage,
    ollama_usage,
    openai_usage,
    responses_tools,
    text_chars,
)

# Text deltas carry no usage: their text is measured without decoding the JSON (the hot path of a stream).
_TEXT_DELTA_EVENTS = frozenset({"content_block_delta", "response.output_text.delta", "response.reasoning_text.delta"})
# A JSON string's text, with the loop unrolled (runs of plain characters, then one escape): twice as fast.
_TEXT_VALUE = re.compile(
    r'"(?:content|text|delta|arguments|refusal|thinking|partial_json|reasoning)":\s*"([^"\\]*(?:\\.[^"\\]*)*)"'
)
_NEEDS_JSON = re.compile(r'"(?:usage|error)":\s*\{|"type":\s*"error"')
_TEXT_BYTES = re.compile(_TEXT_VALUE.pattern.encode())
_USAGE_OBJECT = re.compile(rb'"usage":\s*\{')
# The event lines of text deltas, by the shape that names its events: a chunk of only these is plain text.
_DELTA_LINES = {
    "anthropic": (b"event: content_block_delta\n",),
    "responses": (b"event: response.output_text.delta\n", b"event: response.reasoning_text.delta\n"),
}

# Mid-stream error events, as the record's error_type.
_STREAM_ERRORS = {"overloaded_error": "overloaded", "rate_limit_error": "rate_limited", "api_error": "server_error"}


class StreamMeter:
    """Watches the events of one streamed response (SSE, or NDJSON lines for Ollama): the model, the usage, how
    much text went by, and whether the terminal event came (`[DONE]`, `message_stop`,
    `response.completed`/`incomplete`/`failed`, Gemini's chunk with a finishReason, Ollama's `done: true`)."""

    def __init__(self, shape: str, endpoint: str) -> None:
        self.shape = shape
        self.endpoint = endpoint
        self.usage: Usage | None = None
        self.model: str | None = None
        self.text_chars = 0
        self.terminal = False  # the stream's last event went by: the answer is complete
        self.error: str | None = None  # the provider reported a failure in the stream itself
        self._anthropic_usage: dict[str, Any] = {}
        self._tier: Any = None  # an OpenAI chunk's service_tier, for the usage chunk that follows
        self._deltas = _DELTA_LINES.get("responses" if endpoint == "responses" else shape, ())
        self._next_deltas = tuple(b"\n\n" + line for line in self._deltas)  # an event after another
        # The bytes around the text of the first skimmed single-event chunk: a provider frames every text delta of
        # a stream alike (same id, model, index), so a chunk framed the same with plain text between is one too.
        # The stream relay (gateway.streamed) checks a chunk against it in its own loop: the bulk of every stream.
        self.frame: tuple[bytes, bytes] | None = None

    def observe(self, event: SSEEvent) -> bool:
        """Fold one event in. True when it is a usage-only chunk (choices empty, usage set)."""
        if not event.data:
            return False
        if event.data == "[DONE]":
            self.terminal = self.terminal or self.shape == "openai"
            return False
        if self._plain_text(event):
            return False
        try:
            data = loads(event.data)
        except ValueError:
            return False
        if not isinstance(data, Mapping):
            return False
        if data.get("type") == "error" or (self.shape != "anthropic" and data.get("error")):
            kind = dig(data, "error", "type")
            self.error = self.error or _STREAM_ERRORS.get(kind if isinstance(kind, str) else "", "stream_error")
            return False
        if self.shape == "gemini":
            self._gemini(data)
            return False
        if self.shape == "ollama":
            self._ollama(data)
            return False
        if self.shape == "anthropic":
            self._anthropic(data)
            return False
        if self.endpoint == "responses":
            self._responses(data)
            return False
        return self._openai_chunk(data)

    def skim(self, chunk: bytes) -> bool:
        """A chunk of whole SSE events that are all plain text deltas (most of a stream): their text counted at
        once, True. False, with nothing counted, when any event may need parsing (usage, an error, the terminal
        event, another kind of event, data over several lines, CR line ends): the caller then feeds the chunk to
        the parser. Substring tests only. A chunk framed like the first one skimmed is the stream relay's to check
        (gateway.streamed), in its own loop: this takes the rest, and learns that frame."""
        events = chunk.count(b"\n\n")
        if (
            not chunk.endswith(b"\n\n")
            or b"\r" in chunk
            or b"\n\n\n" in chunk
            or b"[DONE]" in chunk
            or b'"error"' in chunk
            or (b'"usage"' in chunk and _USAGE_OBJECT.search(chunk) is not None)
        ):
            return False
        if self._deltas:  # named events: each one its text-delta name line, one data line, the blank line
            if (
                not chunk.startswith(self._deltas)
                or sum(map(chunk.count, self._next_deltas)) != events - 1
                or chunk.count(b"\n") != 3 * events
                or chunk.count(b"\ndata:") != events
            ):
                return False
        elif (  # an OpenAI chunk is plain once the model is known: one data line each
            self.shape != "openai"
            or self.model is None
            or not chunk.startswith(b"data:")
            or chunk.count(b"\n") != 2 * events
            or chunk.count(b"\ndata:") != events - 1
        ):
            return False
        if chunk.isascii():
            self.text_chars += len(b"".join(_TEXT_BYTES.findall(chunk)))
        else:  # counted in characters, as the parser counts them
            self.text_chars += len("".join(_TEXT_VALUE.findall(chunk.decode("utf-8", errors="replace"))))
        if self.frame is None and events == 1:
            self._learn_frame(chunk)
        return True

    def _learn_frame(self, chunk: bytes) -> None:
        """The frame of a plain one-event chunk whose only text is one string (the delta's)."""
        found = list(_TEXT_BYTES.finditer(chunk))
        if len(found) == 1:
            self.frame = (chunk[: found[0].start(1)], chunk[found[0].end(1) :])

    def _plain_text(self, event: SSEEvent) -> bool:
        """A text delta (after the first chunk gave the model): count its text and skip the JSON decoding."""
        if event.event in _TEXT_DELTA_EVENTS or (
            self.shape == "openai" and self.endpoint != "responses" and self.model is not None
        ):
            if _NEEDS_JSON.search(event.data):
                return False
            self.text_chars += sum(len(m) for m in _TEXT_VALUE.findall(event.data))
            return True
        return False

    def _model_and_usage(self, envelope: Any) -> Mapping[str, Any] | None:
        """Takes the model a chunk, response or message names; returns its usage when it carries one."""
        model = dig(envelope, "model")
        if isinstance(model, str):
            self.model = model
        u = dig(envelope, "usage")
        return u if isinstance(u, Mapping) else None

    def _openai_chunk(self, data: Mapping[str, Any]) -> bool:
        u = self._model_and_usage(data)
        if "service_tier" in data:
            self._tier = data["service_tier"]
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                self.text_chars += text_chars(dig(choice, "delta")) + text_chars(dig(choice, "text"))
        if u is not None:
            self.usage = openai_usage(u, self._tier)
            return not choices
        return False

    def _responses(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self.text_chars += len(data["delta"])
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            response = data.get("response")
            u = self._model_and_usage(response)
            if u is not None:
                tools = responses_tools(dig(response, "output"))
                self.usage = openai_usage(u, dig(response, "service_tier"), tools)
            if kind != "response.created":
                # An incomplete answer (max_output_tokens reached) is what was asked for; a failed one is not.
                self.terminal = True
                if kind == "response.failed":
                    self.error = self.error or "response_failed"

    def _gemini(self, data: Mapping[str, Any]) -> None:
        """Each chunk may carry usageMetadata, cumulative; the last chunk carries a finishReason."""
        if isinstance(data.get("modelVersion"), str):
            self.model = data["modelVersion"]
        u = data.get("usageMetadata")
        if isinstance(u, Mapping):
            self.usage = gemini_usage(u)
        candidates = data.get("candidates")
        if isinstance(candidates, list):
            for c in candidates[:MAX_OUTPUT_ITEMS]:
                self.text_chars += text_chars(dig(c, "content", "parts"))
                if dig(c, "finishReason"):
                    self.terminal = True

    def _ollama(self, data: Mapping[str, Any]) -> None:
        if isinstance(data.get("model"), str):
            self.model = data["model"]
        self.text_chars += text_chars(dig(data, "message", "content")) + text_chars(data.get("response"))
        if data.get("done") is True:
            self.usage = ollama_usage(data) or self.usage
            self.terminal = True

    def _anthropic(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            u = self._model_and_usage(data.get("message"))
            if u is not None:
                self._anthropic_usage = dict(u)
                self.usage = anthropic_usage(self._anthropic_usage)
        elif kind == "message_delta":
            # message_delta usage is cumulative: the last one wins, field by field, never summed.
            u = data.get("usage")
            if isinstance(u, Mapping):
                self._anthropic_usage.update({k: v for k, v in u.items() if v is not None})
                self.usage = anthropic_usage(self._anthropic_usage)
        elif kind == "content_block_delta":
            self.text_chars += text_chars(data.get("delta")) - len(str(dig(data, "delta", "type") or ""))
        elif kind == "message_stop":
            self.terminal = True
