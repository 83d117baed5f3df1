"""The request body: read within its bound, parsed as JSON within bounds, and what it says about the answer's
framing. Shared by the proxy's admission and the admin routes."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from picometer.asgi import Receive
from picometer.gateway.bounds import MAX_JSON_DEPTH, too_deep
from picometer.gateway.refusals import Refusal
from picometer.gateway.settle import Facts
from picometer.metering.audio_prices import SPEECH
from picometer.metering.endpoints import Endpoint
from picometer.metering.json_value import TooDeep, loads


class ClientGone(Exception):
    """The client hung up before we could answer; `facts`: what admission had learnt by then."""

    def __init__(self, facts: Facts | None = None) -> None:
        super().__init__("client gone")
        self.facts = facts


async def read_body(receive: Receive, limit: int, headers: dict[str, str]) -> bytes | None:
    """The whole request body, or None once it passes `limit` (checked before reading when declared)."""
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def is_streaming(endpoint: Endpoint, fields: Mapping[str, Any]) -> bool:
    """Whether the answer will stream: Gemini says so in the path, Ollama streams unless told not to, speech
    comes as events when asked for them."""
    if endpoint.shape == "gemini":
        return endpoint.name == "streamGenerateContent"
    if endpoint.shape == "ollama" and endpoint.name in ("api/chat", "api/generate"):
        return fields.get("stream", True) is not False
    if endpoint.name == SPEECH:
        return fields.get("stream_format") == "sse"
    return fields.get("stream") is True or fields.get("stream") == "true"


def json_bytes(body: Mapping[str, Any], ascii_only: bool) -> bytes:
    """A body written again for the provider: ASCII when the client's was (twice as fast to write), UTF-8 when
    it held other text; a lone surrogate (sent as a "\\ud800" escape) stays an escape, as UTF-8 cannot carry it."""
    if not ascii_only:
        try:
            return json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            pass
    return json.dumps(body).encode()


USAGE_ASKED = b'"stream_options":{"include_usage":true},'


def written_again(body: Mapping[str, Any], content: bytes, usage_asked_only: bool) -> bytes:
    """The body as changed by admission, for the provider. When the only change is a new stream_options asking
    for usage, it is written into the client's bytes after the opening brace instead of writing the whole body
    again (a 100 KB agent prompt: a quarter of a millisecond); not into a body that does not start with its brace
    (a BOM, UTF-16)."""
    start = len(content) - len(content.lstrip())
    if usage_asked_only and content[start : start + 1] == b"{":
        return content[: start + 1] + USAGE_ASKED + content[start + 1 :]
    return json_bytes(body, content.isascii())


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise Refusal(400, "invalid_request_error", "the request body is empty; this endpoint needs a JSON object")
    try:
        parsed = loads(body)
    except TooDeep:
        raise Refusal(400, "invalid_request_error", _TOO_DEEP) from None
    except UnicodeDecodeError:
        raise Refusal(
            400, "invalid_request_error", "the request body is not UTF-8 text; send JSON encoded as UTF-8"
        ) from None
    except ValueError as e:
        raise Refusal(400, "invalid_request_error", f"the request body is not valid JSON ({e})") from None
    if not isinstance(parsed, dict):
        raise Refusal(400, "invalid_request_error", "the request body must be a JSON object")
    # Fewer brackets than the bound cannot nest past it: most bodies skip the walk.
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and too_deep(parsed):
        raise Refusal(400, "invalid_request_error", _TOO_DEEP)
    return parsed


_TOO_DEEP = f"the request body nests JSON more than {MAX_JSON_DEPTH} levels deep; no API needs that"
