"""Refusals in the calling API's own error shape, so SDKs surface our message unchanged."""

from __future__ import annotations

import json


def error_body(kind: str, code: str, message: str) -> bytes:
    if kind == "anthropic":
        body: dict[str, object] = {"type": "error", "error": {"type": code, "message": message}}
    else:
        body = {"error": {"type": code, "code": code, "message": message, "param": None}}
    return json.dumps(body, ensure_ascii=False).encode()


def kind_for_refusal(provider_kind: str | None, headers: dict[str, str], rest: str) -> str:
    """Which error shape the client expects when the provider is not known."""
    if provider_kind:
        return provider_kind
    if "anthropic-version" in headers or "x-api-key" in headers or rest.endswith("messages"):
        return "anthropic"
    return "openai"
