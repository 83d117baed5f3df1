"""A simulated provider: OpenAI- and Anthropic-compatible, streaming, with usage, latency and faults.

`picometer demo` and the tests use it in place of a real provider. This module is the ASGI app (routing,
latency, faults, stream pacing); what each API answers is in picometer.simulated_answers. Per-request
behaviour is set by headers the client sends (picometer forwards them untouched):
  x-sim-fault: httpNNN (any status; 429 carries Retry-After: 1) | quota (OpenAI's 429 insufficient_quota)
               | html | truncated | cut (connection reset mid-stream) | stall (mid-stream) | no-usage
               | no-terminal (a stream that ends cleanly without its last event)
  x-sim-tail-ms: N (a stream's body ends N ms after its terminal event, as real providers' often do)
  x-sim-retry-after: S, an HTTP date, or "none" (the Retry-After of an httpNNN fault)
  x-sim-fail-first: N (only the first N calls carrying the same x-sim-id, or body, get the fault)
  x-sim-cached: N (cached input tokens to report)   x-sim-cache-write: N (Anthropic cache writes)
  x-sim-latency-ms: N (before the first byte)       x-sim-chunk-bytes: N (re-split the stream into N-byte writes)
  x-sim-reasoning: N (reasoning tokens to report)  x-sim-set-cookie: 1 (answer with a Set-Cookie)
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from picometer.asgi import Receive, Scope, Send
from picometer.simulated_answers import ANSWERS, EVENTS, SimCall, text_of


async def request_body(scope: Scope, receive: Receive, send: Send) -> bytes | None:
    """An HTTP request's whole body; None for any other scope (a lifespan is answered here, to its shutdown),
    which the caller then leaves alone. The tests' and the bench's small ASGI servers use it too."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return None
    if scope["type"] != "http":
        return None
    body: bytes = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            return body


@dataclass
class SimSettings:
    latency_s: float = 0.0  # before the first byte
    chunk_delay_s: float = 0.0  # between stream events
    words: int = 12  # length of a reply, in words, before max_tokens trims it
    reply: str = ""  # a fixed answer to every prompt: a provider that answers out of format


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Simulator:
    settings: SimSettings = field(default_factory=SimSettings)
    requests: int = 0
    seen: deque[Seen] = field(default_factory=lambda: deque(maxlen=256))
    tries: dict[str | bytes, int] = field(default_factory=dict)  # x-sim-fail-first counts, by x-sim-id or body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests += 1
        self.seen.append(Seen(scope["method"], scope["path"], headers, body))
        path = scope["path"].removeprefix("/v1")
        fault = headers.get("x-sim-fault", "")
        if "x-sim-fail-first" in headers:
            key = headers.get("x-sim-id") or body
            self.tries[key] = self.tries.get(key, 0) + 1
            if self.tries[key] > int(headers["x-sim-fail-first"]):
                fault = ""
        delay = int(headers.get("x-sim-latency-ms", "0")) / 1000 or self.settings.latency_s
        if delay:
            await asyncio.sleep(delay)
        if scope["method"] == "GET" and path == "/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "sim-1", "object": "model"}]})
            return
        if fault.startswith("http") and fault[4:].isdigit():
            status = int(fault[4:])
            after = headers.get("x-sim-retry-after", "1" if status == 429 else "none")
            extra = [] if after == "none" else [(b"retry-after", after.encode())]
            await _json(send, status, {"error": {"type": "simulated", "message": f"simulated {status}"}}, extra)
            return
        if fault == "quota":
            message = "You exceeded your current quota, please check your plan and billing details."
            error = {"message": message, "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
            await _json(send, 429, {"error": error})
            return
        if fault == "html":
            await _raw(send, 200, b"<html><body>Welcome to nginx!</body></html>", b"text/html")
            return
        try:
            req = json.loads(body)
        except ValueError:
            await _json(send, 400, {"error": {"type": "invalid_request_error", "message": "body is not JSON"}})
            return
        call = SimCall(req, headers, self._reply(req))
        handler = ANSWERS.get(path)
        if handler is None:
            await _json(send, 404, {"error": {"type": "not_found", "message": f"no route {path}"}})
            return
        if req.get("stream") is True and path not in ("/embeddings", "/messages/count_tokens"):
            chunk_bytes, tail_s = (
                int(headers.get("x-sim-chunk-bytes", "0")),
                int(headers.get("x-sim-tail-ms", "0")) / 1000,
            )
            await self._stream(send, call, path, fault, chunk_bytes, tail_s)
            return
        payload = handler(call)
        if fault == "no-usage":
            payload.pop("usage", None)
        data = json.dumps(payload).encode()
        if fault == "truncated":
            data = data[: len(data) // 2]
        cookie = [(b"set-cookie", b"sim_session=abc; Path=/")] if headers.get("x-sim-set-cookie") else []
        await _raw(send, 200, data, b"application/json", cookie)

    def _reply(self, req: dict[str, Any]) -> str:
        if self.settings.reply:
            return self.settings.reply
        prompt = text_of(req.get("messages") or req.get("input") or req.get("prompt") or "")
        if "PONG" in prompt:
            return "PONG"
        words = [w for w in prompt.split() if w][-4:] or ["nothing"]
        text = " ".join(["Simulated", "answer", "about", *words] + ["lorem"] * self.settings.words)
        limit = req.get("max_tokens") or req.get("max_completion_tokens") or req.get("max_output_tokens")
        if isinstance(limit, int) and limit > 0:
            text = text[: limit * 4]
        return text

    async def _stream(self, send: Send, call: SimCall, path: str, fault: str, chunk_bytes: int, tail_s: float) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        events = list(EVENTS[path](call, fault))
        if fault == "no-terminal":
            events.pop()
        for i, event in enumerate(events):
            if fault in ("cut", "stall") and i == len(events) // 2:
                if fault == "stall":
                    await asyncio.sleep(3600)
                raise ConnectionResetError("simulated cut")  # uvicorn drops the connection mid-body
            if chunk_bytes > 0:
                for j in range(0, len(event), chunk_bytes):
                    await send({"type": "http.response.body", "body": event[j : j + chunk_bytes], "more_body": True})
            else:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            if self.settings.chunk_delay_s:
                await asyncio.sleep(self.settings.chunk_delay_s)
        if tail_s:
            await asyncio.sleep(tail_s)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _json(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _raw(send, status, json.dumps(body).encode(), b"application/json", extra)


async def _raw(
    send: Send, status: int, body: bytes, ctype: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
