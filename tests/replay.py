"""A provider that answers what the test tells it: a real loopback HTTP server serving queued answers in order.

    with ReplayServer() as replay:
        replay.answer_json({"model": "gpt-4o", "usage": {...}})
        replay.answer_sse([{"type": "message_start", ...}, ...], anthropic_style=True)
        ...  # calls through the gateway
        replay.requests[0].json  # what the provider was sent

One answer per request; a request with no answer queued gets a 500.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from picometer.simulator import Receive, Scope, Send, request_body
from tests.servers import AppServer


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # the raw path as sent, with its query string
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass(frozen=True)
class _Answer:
    status: int
    content_type: bytes
    body: bytes


def sse(events: list[dict[str, Any] | str], *, anthropic_style: bool = False) -> bytes:
    """Events as an SSE body: `data: <json>` each; with `event: <type>` lines first when anthropic_style."""
    out = []
    for ev in events:
        data = ev if isinstance(ev, str) else json.dumps(ev)
        head = f"event: {ev['type']}\n" if anthropic_style and isinstance(ev, dict) else ""
        out.append(f"{head}data: {data}\n\n")
    return "".join(out).encode()


class ReplayServer(AppServer):
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self._answers: deque[_Answer] = deque()
        super().__init__(self)

    def answer_json(self, body: dict[str, Any], status: int = 200) -> None:
        self._answers.append(_Answer(status, b"application/json", json.dumps(body).encode()))

    def answer_sse(self, events: list[dict[str, Any] | str], *, anthropic_style: bool = False) -> None:
        self._answers.append(_Answer(200, b"text/event-stream", sse(events, anthropic_style=anthropic_style)))

    def answer_bytes(self, body: bytes, content_type: bytes = b"application/octet-stream") -> None:
        self._answers.append(_Answer(200, content_type, body))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        path = scope.get("raw_path") or scope["path"].encode()
        query = scope.get("query_string", b"")
        target = (path + (b"?" + query if query else b"")).decode("latin-1")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(Request(scope["method"], target, headers, body))
        answer = (
            self._answers.popleft()
            if self._answers
            else _Answer(500, b"application/json", b'{"error": {"message": "no answer queued"}}')
        )
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-type", answer.content_type),
                    (b"content-length", str(len(answer.body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})
