"""An upstream error body in the other API's error shape, so the client's SDK raises its own error with the
upstream's message (SDKs pick the exception class from the HTTP status; the body carries the words)."""

from __future__ import annotations

from typing import Any

# OpenAI error type or code -> the nearest Anthropic error type; picometer's own codes pass through unchanged.
_TO_ANTHROPIC = {
    "invalid_request_error": "invalid_request_error",
    "invalid_api_key": "authentication_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "model_not_found": "not_found_error",
    "not_found_error": "not_found_error",
    "rate_limit_exceeded": "rate_limit_error",
    "rate_limit_error": "rate_limit_error",
    "requests": "rate_limit_error",
    "tokens": "rate_limit_error",
    "insufficient_quota": "billing_error",
    "server_error": "api_error",
    "api_error": "api_error",
}
# Anthropic error type -> the OpenAI error type its SDK users know; the Anthropic type stays as `code`.
_TO_OPENAI = {
    "rate_limit_error": "rate_limit_exceeded",
    "billing_error": "insufficient_quota",
    "api_error": "server_error",
    "overloaded_error": "server_error",
    "timeout_error": "server_error",
}
MAX_MESSAGE_CHARS = 4000  # an upstream's error message, kept within bounds


def is_error(body: Any, shape: str) -> bool:
    if not isinstance(body, dict):
        return False
    if shape == "anthropic":
        return body.get("type") == "error"
    return "error" in body and "choices" not in body


def _message(value: Any) -> str:
    return (value if isinstance(value, str) and value else "the upstream provider answered with an error")[
        :MAX_MESSAGE_CHARS
    ]


def error(body: Any, from_shape: str, to_shape: str) -> dict[str, Any]:
    """An error body of API `from_shape` (any JSON; an odd one gets a generic message) in `to_shape`'s shape."""
    inner = body.get("error") if isinstance(body, dict) else None
    if not isinstance(inner, dict):
        inner = {"message": inner} if isinstance(inner, str) else {}  # Ollama-like {"error": "text"}
    kind = inner.get("type") if isinstance(inner.get("type"), str) else None
    code = inner.get("code") if isinstance(inner.get("code"), str) else None
    message = _message(inner.get("message"))
    if from_shape == to_shape:
        if to_shape == "anthropic":
            return {"type": "error", "error": {"type": kind or "api_error", "message": message}}
        return {"error": {"message": message, "type": kind or "server_error", "param": None, "code": code}}
    if to_shape == "anthropic":
        named = _TO_ANTHROPIC.get(code or "") or _TO_ANTHROPIC.get(kind or "") or code or kind or "api_error"
        return {"type": "error", "error": {"type": named, "message": message}}
    anthropic_type = kind or "api_error"
    openai_type = _TO_OPENAI.get(anthropic_type, anthropic_type)
    return {"error": {"message": message, "type": openai_type, "param": None, "code": anthropic_type}}
