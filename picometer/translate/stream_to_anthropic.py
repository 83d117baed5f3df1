"""An OpenAI chat.completion.chunk stream, event by event, as Anthropic messages stream events.

message_start comes with the first chunk; OpenAI tells usage only at the end, so message_start counts zero input
tokens and message_delta carries the whole usage (input included, which Anthropic's SDK takes from there).
Content arrives as text and tool_use blocks, each opened, filled and closed in turn; only indexes are kept.
"""

from __future__ import annotations

from typing import Any

from picometer.translate.errors import error
from picometer.translate.framing import MAX_TOOL_CALLS, anthropic_event, payload
from picometer.translate.stops import stop_reason
from picometer.translate.untranslatable import Untranslatable, count, obj, seq, text
from picometer.translate.usage import anthropic_usage


class OpenAIToAnthropic:
    def __init__(self, model: str) -> None:
        self.model = model
        self.started = False
        self.finished = False
        self.open: int | None = None  # the index of the block being filled
        self.open_is_text = False
        self.blocks = 0
        self.tools: dict[int, int] = {}  # OpenAI tool call index -> Anthropic block index
        self.stop: str | None = None
        self.refused = False
        self.usage: Any = None

    def feed(self, name: str, data: str) -> bytes:
        if self.finished:
            return b""
        if data.strip() == "[DONE]":
            return self._start("msg_picometer") + self._end()
        chunk = payload(data)
        if "error" in chunk and not chunk.get("choices"):
            self.finished = True
            return anthropic_event(error(chunk, "openai", "anthropic"))
        out = self._start(chunk.get("id"))
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for i, raw in enumerate(seq(chunk.get("choices") or [], "choices")):
            choice = obj(raw, f"choices[{i}]")
            if choice.get("index", 0) != 0:
                raise Untranslatable("a second choice in the answer", "Anthropic gives one answer per call")
            out += self._choice(choice)
        return out

    def _start(self, id_: Any) -> bytes:
        if self.started:
            return b""
        self.started = True
        message: dict[str, Any] = {
            "id": id_ if isinstance(id_, str) else "msg_picometer",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return anthropic_event({"type": "message_start", "message": message})

    def _choice(self, choice: dict[str, Any]) -> bytes:
        delta = obj(choice.get("delta") or {}, "delta")
        for field in ("audio", "function_call"):
            if delta.get(field) is not None:
                raise Untranslatable(f"`{field}` in the answer", "Anthropic answers have no place for it")
        out = b""
        if delta.get("content"):
            out += self._text(text(delta["content"], "delta.content"))
        if delta.get("refusal"):
            self.refused = True
            out += self._text(text(delta["refusal"], "delta.refusal"))
        for k, call in enumerate(seq(delta.get("tool_calls") or [], "delta.tool_calls")):
            out += self._tool(obj(call, f"delta.tool_calls[{k}]"))
        if choice.get("finish_reason") is not None:
            self.stop = stop_reason(choice["finish_reason"])
            out += self._close()
        return out

    def _open(self, block: dict[str, Any]) -> bytes:
        out = self._close()
        self.open = self.blocks
        self.blocks += 1
        return out + anthropic_event({"type": "content_block_start", "index": self.open, "content_block": block})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        index, self.open = self.open, None
        return anthropic_event({"type": "content_block_stop", "index": index})

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return anthropic_event({"type": "content_block_delta", "index": self.open, "delta": delta})

    def _text(self, said: str) -> bytes:
        out = b""
        if self.open is None or not self.open_is_text:
            out = self._open({"type": "text", "text": ""})
            self.open_is_text = True
        return out + self._delta({"type": "text_delta", "text": said})

    def _tool(self, call: dict[str, Any]) -> bytes:
        index = count(call.get("index"), "delta.tool_calls.index")
        fn = obj(call.get("function") or {}, "delta.tool_calls.function")
        out = b""
        if index not in self.tools:
            if len(self.tools) >= MAX_TOOL_CALLS:
                raise Untranslatable(f"more than {MAX_TOOL_CALLS} tool calls", "no model answer has that many")
            id_ = call.get("id") if isinstance(call.get("id"), str) else f"toolu_picometer_{index}"
            name = text(fn.get("name") or "", "delta.tool_calls.function.name")
            out = self._open({"type": "tool_use", "id": id_, "name": name, "input": {}})
            self.open_is_text = False
            self.tools[index] = self.blocks - 1
        piece = text(fn.get("arguments") or "", "delta.tool_calls.function.arguments")
        if piece:
            if self.tools[index] != self.open:
                raise Untranslatable("interleaved tool call arguments", "Anthropic streams one block at a time")
            out += self._delta({"type": "input_json_delta", "partial_json": piece})
        return out

    def _end(self) -> bytes:
        self.finished = True
        reason = "refusal" if self.refused else (self.stop or "end_turn")
        usage = anthropic_usage(self.usage)
        delta = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}, "usage": usage}
        return self._close() + anthropic_event(delta) + anthropic_event({"type": "message_stop"})
