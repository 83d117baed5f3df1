"""Output-token limits in request bodies: read them, cap them, and bound a call's worst case. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

# Output allowance reserved for a call that sets no limit of its own when no per-request cap applies.
# Set max_tokens_per_request to make the worst case exact: picometer then writes that limit into the call.
DEFAULT_OUTPUT_ALLOWANCE = 4096
# Byte-level BPE tokens are rarely shorter than 3 bytes of UTF-8 (English averages over 4, CJK about 3).
WORST_BYTES_PER_TOKEN = 3
REQUEST_OVERHEAD_TOKENS = 16  # role markers and message framing


class OverCap(ValueError):
    def __init__(self, field: str, requested: int, cap: int) -> None:
        super().__init__(f"{field} = {requested} is above the cap of {cap}")
        self.field, self.requested, self.cap = field, requested, cap


def limit_fields(shape: str, endpoint: str) -> tuple[str, ...]:
    """The body fields that bound output tokens for this API shape, the newest name first."""
    if shape == "anthropic":
        return ("max_tokens",) if endpoint == "messages" else ()
    return {
        "chat/completions": ("max_completion_tokens", "max_tokens"),
        "completions": ("max_tokens",),
        "responses": ("max_output_tokens",),
    }.get(endpoint, ())


def field_to_set(shape: str, endpoint: str, base_url: str) -> str | None:
    """Which field picometer writes when a call sets none: OpenAI itself wants max_completion_tokens (its
    reasoning models refuse max_tokens); OpenAI-compatible servers widely know only max_tokens."""
    fields = limit_fields(shape, endpoint)
    if not fields:
        return None
    if fields[0] == "max_completion_tokens" and urlsplit(base_url).hostname != "api.openai.com":
        return "max_tokens"
    return fields[0]


def positive_int(value: Any) -> int | None:
    """A request's positive integer field, or None (bool, float, text, zero and below are not one)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def output_limit(body: Mapping[str, Any], fields: tuple[str, ...]) -> int | None:
    """The tightest output limit the call sets, or None."""
    limits = [v for v in (positive_int(body.get(f)) for f in fields) if v is not None]
    return min(limits) if limits else None


def apply_cap(body: dict[str, Any], shape: str, endpoint: str, base_url: str, cap: int, over_cap: str) -> bool:
    """Hold the call to `cap` output tokens (clamp, or OverCap for "reject"). True when the body changed."""
    fields = limit_fields(shape, endpoint)
    if not cap or not fields:
        return False
    limit = output_limit(body, fields)
    if limit is None:
        body[field_to_set(shape, endpoint, base_url) or fields[0]] = cap
        return True
    if limit <= cap:
        return False
    if over_cap == "reject":
        field = next(f for f in fields if positive_int(body.get(f)) == limit)
        raise OverCap(field, limit, cap)
    for f in fields:
        value = positive_int(body.get(f))
        if value is not None and value > cap:
            body[f] = cap
    thinking = body.get("thinking")
    if shape == "anthropic" and isinstance(thinking, dict):
        budget = positive_int(thinking.get("budget_tokens"))
        if budget is not None and budget >= cap:  # Anthropic wants the thinking budget below max_tokens
            body["thinking"] = {**thinking, "budget_tokens": max(cap - 1, 1)}
    return True


def choices(body: Mapping[str, Any], endpoint: str) -> int:
    """How many completions one call generates (each billed): n, or best_of for legacy completions."""
    if endpoint not in ("chat/completions", "completions"):
        return 1
    n = positive_int(body.get("n")) or 1
    best_of = (positive_int(body.get("best_of")) or 1) if endpoint == "completions" else 1
    return max(n, best_of)
