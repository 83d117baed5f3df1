"""Answers picometer gives itself, in the calling API's own error shape, so SDKs show our message unchanged."""

from __future__ import annotations

import json
from datetime import datetime

from picometer.duration import format_duration, seconds_until
from picometer.metering.limits import OverCap
from picometer.record import rfc3339_ms
from picometer.store.state import Pause

NO_RETRY = (b"x-should-retry", b"false")  # the official SDKs would otherwise retry a refusal that cannot pass


class Refusal(Exception):
    """An answer picometer gives itself. Raised only before the first byte of a response is sent."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


# Google's canonical status names for the HTTP statuses picometer answers with.
_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(shape: str, code: str, message: str, status: int = 400) -> bytes:
    """OpenAI: error.code; Anthropic: error.type; Gemini: its own {code, message, status} plus error.type;
    Ollama: {"error": message}, the only field its client reads, and `type` beside it."""
    if shape == "anthropic":
        body: dict[str, object] = {"type": "error", "error": {"type": code, "message": message}}
    elif shape == "gemini":
        google = _GOOGLE_STATUS.get(status, "UNKNOWN")
        body = {"error": {"code": status, "message": message, "status": google, "type": code}}
    elif shape == "ollama":
        body = {"error": message, "type": code}
    else:
        body = {"error": {"type": code, "code": code, "message": message, "param": None}}
    return json.dumps(body, ensure_ascii=False).encode()


def shape_for_refusal(endpoint_shape: str | None, provider_kind: str | None, headers: dict[str, str], path: str) -> str:
    """Which error shape the client expects: the API it called, else its provider's, else a guess from its headers."""
    if endpoint_shape:
        return endpoint_shape
    if provider_kind:
        return provider_kind
    if "anthropic-version" in headers or "x-api-key" in headers or path.endswith("messages"):
        return "anthropic"
    if "x-goog-api-key" in headers or ":generateContent" in path or ":streamGenerateContent" in path:
        return "gemini"
    return "openai"


def invalid_path(reason: str) -> Refusal:
    return Refusal(
        400,
        "invalid_path",
        f"{reason}: picometer forwards only plain paths, e.g. /openai/chat/completions; send the path unencoded",
        [NO_RETRY],
    )


def unmetered(path: str, method: str, provider: str, where: str) -> Refusal:
    return Refusal(
        403,
        "unmetered_endpoint",
        f"{method} /{provider}/{path} is not an endpoint picometer can meter, and a dollar cap applies to this "
        f'call, so it is refused rather than let through uncounted. To allow it, set {where}.unmetered = "allow"',
        [NO_RETRY],
    )


def blocked_by_rule(rule: str) -> Refusal:
    """`rule`: the rule and what it matches, e.g. '[[rules]] #2 (match_path = "batches$")'."""
    return Refusal(
        403,
        "blocked_by_rule",
        f"refused by {rule} in the picometer config; to let this call through, edit or remove that rule",
        [NO_RETRY],
    )


def over_cap(e: OverCap, where: str) -> Refusal:
    return Refusal(
        400,
        "max_tokens_over_cap",
        f"{e.field} = {e.requested} is above the cap of {e.cap} output tokens per request "
        f'({where}.max_tokens_per_request); ask for at most {e.cap}, or set over_cap = "clamp"',
    )


def origin_not_allowed(origin: str | None, host: str | None) -> Refusal:
    """A call without a client key from another site's web page: its Origin, or the Host a page that rebinds its
    own name to this machine sends (see gateway/origin.py)."""
    if origin is not None:
        why = f"a web page at {_shown(origin)} may not call picometer from a browser: add that origin to "
        why += "[server].allowed_origins, or have the page send a picometer client key"
    else:
        why = f"a call to this machine by the name {_shown(host or '')} may come from another site's web page: "
        why += "call picometer by 127.0.0.1, localhost, an IP address or this machine's name, or send a client key"
    return Refusal(403, "origin_not_allowed", why, [NO_RETRY])


def _shown(text: str) -> str:
    """Client text in a message: quoted, at most 100 characters, ASCII."""
    return repr(text[:100].encode("ascii", "backslashreplace").decode())


def unpriced(model: str, provider: str) -> Refusal:
    return Refusal(
        400,
        "unpriced_model",
        f"picometer has no price for model {model!r} on provider {provider!r}, so it cannot keep "
        f'your budget. Add [prices."{model}"] with input = and output = (dollars per 1M tokens) to the '
        'config, or set [budgets].unpriced = "allow"',
    )


def paused(pause: Pause, now: datetime) -> Refusal:
    if pause.until is None:
        return Refusal(
            429,
            "workflow_paused",
            f"workflow {pause.workflow!r} is paused (by {pause.by}) until resumed: picometer resume {pause.workflow}",
            [NO_RETRY],
        )
    wait = seconds_until(pause.until, now)
    return Refusal(
        429,
        "workflow_paused",
        f"workflow {pause.workflow!r} is paused (by {pause.by}) for another {format_duration(pause.until - now)}, "
        f"until {rfc3339_ms(pause.until)}; resume it sooner with: picometer resume {pause.workflow}",
        [(b"retry-after", str(wait).encode()), NO_RETRY],
    )
