"""The most a request can cost, read from the request alone: the reservation held against the budgets. Pure.

Every choice errs high: a cap is a ceiling that concurrent calls cannot pass.
- Input: prompt text at 3 UTF-8 bytes per token; images by each provider's formula from their header
  dimensions, at the model's maximum when given by URL or file; a Responses call that continues an earlier
  one (`previous_response_id`, `conversation`) at the model's whole context window.
- Every input token at the dearest rate it can be billed at (plain, cache write, 1-hour write when the
  request asks for that TTL, audio when it sends audio).
- Output: the request's limit (or DEFAULT_OUTPUT_ALLOWANCE) times its choices, as audio when it asks for audio.
  Gemini bills thinking as output and documents it apart from maxOutputTokens: its thinkingBudget is added,
  or limits.GEMINI_DYNAMIC_THINKING when the model thinks as much as it likes (no budget, or -1).
- The service tier it asks for; none or "auto" at "priority", the dearest (a project may default to it).
- Per-use tool fees times the request's limit (picometer writes DEFAULT_TOOL_USES when it sets none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from picometer.metering.fees import chat_search, max_tool_uses
from picometer.metering.images import request_images
from picometer.metering.limits import (
    DEFAULT_OUTPUT_ALLOWANCE,
    REQUEST_OVERHEAD_TOKENS,
    WORST_BYTES_PER_TOKEN,
    choices,
    limit_fields,
    output_limit,
    thinking_allowance,
)
from picometer.metering.usage import Usage, request_text_bytes

DEFAULT_CONTEXT_WINDOW = 2_000_000  # a continued conversation on a model whose context window is not known
DEAREST_TIER = "priority"
_MAX_WALK = 100_000  # nodes looked at for a 1-hour cache TTL or audio parts: bounded whatever arrives


def worst_usage(
    body: Mapping[str, Any], shape: str, endpoint: str, model: str = "", context_window: int | None = None
) -> Usage:
    """The most a call can use: its input bounded from above, and every output token it may generate."""
    image_tokens, image_chars = request_images(body, shape, model)
    text = max(request_text_bytes(body) - image_chars, 0)
    input_tokens = math.ceil(text / WORST_BYTES_PER_TOKEN) + REQUEST_OVERHEAD_TOKENS + image_tokens
    if endpoint == "responses" and (body.get("previous_response_id") or body.get("conversation")):
        input_tokens = max(input_tokens, context_window or DEFAULT_CONTEXT_WINDOW)
    if endpoint == "embeddings":
        return Usage(input_tokens=input_tokens)
    limit = output_limit(body, limit_fields(shape, endpoint)) or DEFAULT_OUTPUT_ALLOWANCE
    limit += thinking_allowance(body, shape)
    output_tokens = limit * choices(body, endpoint)
    found = _find(body)
    tier = body.get("service_tier")
    modalities = body.get("modalities")
    audio_out = isinstance(modalities, list) and "audio" in modalities
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_write_1h_tokens=input_tokens if "1h" in found else 0,
        audio_input_tokens=input_tokens if "audio" in found else 0,
        audio_output_tokens=output_tokens if audio_out else 0,
        tool_calls=chat_search(max_tool_uses(shape, body), endpoint, model),
        service_tier=tier if isinstance(tier, str) and tier not in ("auto", "") else DEAREST_TIER,
    )


def _audio_mime(node: Mapping[str, Any]) -> bool:
    """Gemini's inlineData / fileData parts name their media type."""
    mime = node.get("mimeType", node.get("mime_type"))
    return isinstance(mime, str) and mime.startswith("audio/")


def _find(body: Mapping[str, Any]) -> set[str]:
    """Whether the request asks for 1-hour cache writes ("1h") or sends audio ("audio"), in one bounded walk."""
    found: set[str] = set()
    stack: list[Any] = [body]
    seen = 0
    while stack and seen < _MAX_WALK:
        node = stack.pop()
        seen += 1
        if isinstance(node, Mapping):
            cache = node.get("cache_control")
            if isinstance(cache, Mapping) and cache.get("ttl") == "1h":
                found.add("1h")
            if node.get("type") in ("input_audio", "audio") or "input_audio" in node or _audio_mime(node):
                found.add("audio")
            stack.extend(v for v in node.values() if isinstance(v, Mapping | list))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, Mapping | list))
    if stack:  # too big to look through: assume the dearest
        found.update(("1h", "audio"))
    return found
