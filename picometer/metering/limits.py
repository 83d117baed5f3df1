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
GEMINI_DYNAMIC_THINKING = 32_768  # the largest thinking budget Gemini documents (2.5 Pro)


class OverCap(ValueError):
    def __init__(self, field: str, requested: int, cap: int) -> None:
        super().__init__(f"{field} = {requested} is above the cap of {cap}")
        self.field, self.requested, self.cap = field, requested, cap


def limit_fields(shape: str, endpoint: str) -> tuple[str, ...]:
    """The body fields that bound output tokens for this API shape, the newest name first; a dotted name is
    a field inside an object (Gemini's generationConfig, as its SDK writes it and as its REST API also takes it)."""
    if shape == "anthropic":
        return ("max_tokens",) if endpoint == "messages" else ()
    if shape == "gemini":
        if endpoint in ("generateContent", "streamGenerateContent"):
            return ("generationConfig.maxOutputTokens", "generation_config.max_output_tokens")
        return ()
    if shape == "ollama":
        return ("options.num_predict",) if endpoint in ("api/chat", "api/generate") else ()
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


def field_value(body: Mapping[str, Any], field: str) -> Any:
    """A field by its dotted name."""
    value: Any = body
    for part in field.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def set_field(body: dict[str, Any], field: str, value: Any) -> None:
    """Set a field by its dotted name, making the objects on the way (copies: the caller's stay as they were)."""
    *outer, last = field.split(".")
    target = body
    for part in outer:
        inner = target.get(part)
        target[part] = dict(inner) if isinstance(inner, Mapping) else {}
        target = target[part]
    target[last] = value


def output_limit(body: Mapping[str, Any], fields: tuple[str, ...]) -> int | None:
    """The tightest output limit the call sets, or None."""
    limits = [v for v in (positive_int(field_value(body, f)) for f in fields) if v is not None]
    return min(limits) if limits else None


def apply_cap(body: dict[str, Any], shape: str, endpoint: str, base_url: str, cap: int, over_cap: str) -> bool:
    """Hold the call to `cap` output tokens (clamp, or OverCap for "reject"). True when the body changed."""
    fields = limit_fields(shape, endpoint)
    if not cap or not fields:
        return False
    limit = output_limit(body, fields)
    if limit is None:
        # A Gemini body written in snake_case gets the limit in that spelling: one message, one convention.
        snake = shape == "gemini" and "generation_config" in body
        set_field(body, fields[1] if snake else field_to_set(shape, endpoint, base_url) or fields[0], cap)
        return True
    if limit <= cap:
        return False
    if over_cap == "reject":
        field = next(f for f in fields if positive_int(field_value(body, f)) == limit)
        raise OverCap(field, limit, cap)
    for f in fields:
        value = positive_int(field_value(body, f))
        if value is not None and value > cap:
            set_field(body, f, cap)
    thinking = body.get("thinking")
    if shape == "anthropic" and isinstance(thinking, dict):
        budget = positive_int(thinking.get("budget_tokens"))
        if budget is not None and budget >= cap:  # Anthropic wants the thinking budget below max_tokens
            body["thinking"] = {**thinking, "budget_tokens": max(cap - 1, 1)}
    return True


def choices(body: Mapping[str, Any], endpoint: str) -> int:
    """How many completions one call generates (each billed): n, best_of for legacy completions, Gemini's
    candidateCount."""
    if endpoint in ("generateContent", "streamGenerateContent"):
        config = body.get("generationConfig") or body.get("generation_config")
        count = field_value(config, "candidateCount") if isinstance(config, Mapping) else None
        count = count or (field_value(config, "candidate_count") if isinstance(config, Mapping) else None)
        return positive_int(count) or 1
    if endpoint not in ("chat/completions", "completions"):
        return 1
    n = positive_int(body.get("n")) or 1
    best_of = (positive_int(body.get("best_of")) or 1) if endpoint == "completions" else 1
    return max(n, best_of)


def thinking_allowance(body: Mapping[str, Any], shape: str) -> int:
    """Output a call may bill beyond its limit: Gemini documents thinking apart from maxOutputTokens, so its
    thinkingBudget, 0 when turned off, else the documented maximum (the model thinks as much as it likes)."""
    if shape != "gemini":
        return 0
    config = body.get("generationConfig") or body.get("generation_config")
    thinking = (config.get("thinkingConfig") or config.get("thinking_config")) if isinstance(config, Mapping) else None
    budget = None
    if isinstance(thinking, Mapping):
        budget = thinking.get("thinkingBudget", thinking.get("thinking_budget"))
    if isinstance(budget, int) and not isinstance(budget, bool) and 0 <= budget <= GEMINI_DYNAMIC_THINKING:
        return budget
    return GEMINI_DYNAMIC_THINKING
