"""Why an answer ended, in each API's words."""

from __future__ import annotations

from typing import Any

# Anthropic stop_reason -> OpenAI finish_reason; pause_turn (server tools) cannot happen: those are refused.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# OpenAI finish_reason -> Anthropic stop_reason; OpenAI does not say which stop sequence matched, so "stop"
# is always end_turn.
_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def finish_reason(stop_reason: Any) -> str:
    return _FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def stop_reason(finish_reason: Any) -> str:
    return _STOP.get(finish_reason, "end_turn") if isinstance(finish_reason, str) else "end_turn"
