"""An Anthropic messages stream, event by event, as OpenAI chat.completion.chunk events.

The client sees a role chunk first, then content and tool-call deltas, a chunk with the finish reason, the usage
chunk (only when it asked for `stream_options.include_usage`) and `[DONE]`. Only indexes are kept, never text.
"""

from __future__ import annotations

from typing import Any

from picometer.translate.errors import error
from picometer.translate.framing import MAX_TOOL_CALLS, openai_event, payload
from picometer.translate.stops import finish_reason
from picometer.translate.untranslatable import Untranslatable, count, obj, text
from picometer.translate.usage import openai_usage

_IGNORED_DELTAS = ("thinking_delta", "signature_delta", "citations_delta")  # no place for them in OpenAI chunks


class AnthropicToOpenAI:
    def __init__(self, model: str, *, include_usage: bool, created: int) -> None:
        self.model, self.include_usage, self.created = model, include_usage, created
        self.id = "chatcmpl-picometer"
        self.usage: dict[str, Any] = {}
        self.tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index
        self.with_arguments: set[int] = set()  # blocks whose arguments were sent
        self.finished = False
        self._finish_sent = False

    def feed(self, name: str, data: str) -> bytes:
        if self.finished:
            return b""
        event = payload(data)
        kind = event.get("type") or name
        if kind == "message_start":
            return self._start(obj(event.get("message"), "message_start.message"))
        if kind == "content_block_start":
            return self._block(count(event.get("index"), "index"), obj(event.get("content_block"), "content_block"))
        if kind == "content_block_delta":
            return self._delta(count(event.get("index"), "index"), obj(event.get("delta"), "delta"))
        if kind == "content_block_stop":
            index = count(event.get("index"), "index")
            if index in self.tools and index not in self.with_arguments:
                return self._arguments(index, "{}")  # a call without arguments still has a JSON object
            return b""
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._stop()
        if kind == "error":
            self.finished = True
            return openai_event(error(event, "anthropic", "openai"))
        return b""  # ping, and event types Anthropic may add: its versioning says to ignore them

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        return openai_event({**head, "choices": [choice]})

    def _start(self, message: dict[str, Any]) -> bytes:
        if isinstance(message.get("id"), str):
            self.id = message["id"]
        self._count(message.get("usage"))
        return self._chunk({"role": "assistant", "content": ""})

    def _count(self, usage: Any) -> None:
        """Anthropic's counts are running totals: a later one overwrites, an absent one keeps the earlier."""
        if isinstance(usage, dict):
            self.usage.update({k: v for k, v in usage.items() if v is not None})

    def _block(self, index: int, block: dict[str, Any]) -> bytes:
        kind = block.get("type")
        if kind == "text":
            said = text(block.get("text", ""), "content_block.text")
            return self._chunk({"content": said}) if said else b""
        if kind == "tool_use":
            if len(self.tools) >= MAX_TOOL_CALLS:
                raise Untranslatable(f"more than {MAX_TOOL_CALLS} tool calls", "no model answer has that many")
            self.tools[index] = len(self.tools)
            fn = {"name": text(block.get("name"), "content_block.name"), "arguments": ""}
            call = {"index": self.tools[index], "id": text(block.get("id"), "content_block.id"), "type": "function"}
            return self._chunk({"tool_calls": [{**call, "function": fn}]})
        if kind in ("thinking", "redacted_thinking"):
            return b""
        raise Untranslatable(f"a {kind!r} block in the answer", "OpenAI chat answers have no place for it")

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        kind = delta.get("type")
        if kind == "text_delta":
            said = text(delta.get("text"), "delta.text")
            return self._chunk({"content": said}) if said else b""
        if kind == "input_json_delta":
            piece = text(delta.get("partial_json", ""), "delta.partial_json")
            return self._arguments(index, piece) if piece and index in self.tools else b""
        if kind in _IGNORED_DELTAS:
            return b""
        raise Untranslatable(f"a {kind!r} delta in the answer", "OpenAI chat answers have no place for it")

    def _arguments(self, index: int, piece: str) -> bytes:
        self.with_arguments.add(index)
        return self._chunk({"tool_calls": [{"index": self.tools[index], "function": {"arguments": piece}}]})

    def _message_delta(self, event: dict[str, Any]) -> bytes:
        self._count(event.get("usage"))
        delta = event.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if self._finish_sent:
            return b""
        self._finish_sent = True
        return self._chunk({}, finish_reason(reason))

    def _stop(self) -> bytes:
        self.finished = True
        out = b"" if self._finish_sent else self._chunk({}, "stop")
        if self.include_usage:
            head = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
            out += openai_event({**head, "choices": [], "usage": openai_usage(self.usage)})
        return out + openai_event("[DONE]")
