"""SSE events written the way each API writes them, and a received event's JSON read within bounds."""

from __future__ import annotations

import json
from typing import Any

from picometer.metering.json_value import loads
from picometer.translate.untranslatable import Untranslatable

MAX_TOOL_CALLS = 512  # tool calls in one streamed answer; more is not an answer a model gives


def openai_event(payload: dict[str, Any] | str) -> bytes:
    """`data: <json>` (or `data: [DONE]`), as OpenAI streams chat chunks: no event names."""
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


def anthropic_event(payload: dict[str, Any]) -> bytes:
    """`event: <type>` then `data: <json>`, as Anthropic streams; its SDK skips events without a name."""
    return f"event: {payload['type']}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def payload(data: str) -> dict[str, Any]:
    try:
        value = loads(data)
    except ValueError:  # too deep included
        value = None
    if not isinstance(value, dict):
        raise Untranslatable("a stream event that is not a JSON object", "there is nothing to carry over")
    return value
