"""A loopback Ollama server for tests, speaking its native API as documented
(https://github.com/ollama/ollama/blob/main/docs/api.md) and as the `ollama` Python client sends and parses it:

    POST /api/chat       {"model", "messages", "stream"?}  streams by default: NDJSON (application/x-ndjson), one
                         object a line, {"message": {"role": "assistant", "content": piece}, "done": false} ... then
                         a last line with "done": true, "done_reason", the durations (ns), prompt_eval_count and
                         eval_count; with "stream": false that last object alone, with the whole message
    POST /api/generate   the same with "response" text in place of "message" (and "context" on the last line)
    POST /api/embed      {"model", "input": str | [str]} -> {"model", "embeddings", "total_duration",
                         "load_duration", "prompt_eval_count"}

Errors are Ollama's {"error": "..."}. A request for a model not in `models` gets its 404.

    with FakeOllama() as ollama:
        ollama.counts = (26, 282)       # prompt_eval_count, eval_count the answers report from now on
        ...
        ollama.requests[0].json         # what reached the provider
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from picometer.asgi import Receive, Scope, Send
from picometer.simulator import request_body
from tests.replay import Request
from tests.servers import AppServer

REPLY = "The greenhouse is at 18 degrees and the soil is moist, no watering needed tonight"
CREATED_AT = "2026-05-04T19:22:45.499127Z"
MODELS = frozenset({"llama3.2", "llama3.2:latest", "qwen3:0.6b", "all-minilm", "nomic-embed-text"})


def tokens_in(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def prompt_text(req: dict[str, Any]) -> str:
    messages = req.get("messages")
    if isinstance(messages, list):
        return " ".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
    return str(req.get("prompt") or "")


class FakeOllama(AppServer):
    def __init__(self, models: frozenset[str] = MODELS) -> None:
        self.models = models
        self.requests: list[Request] = []
        self.counts: tuple[int, int] | None = None  # (prompt_eval_count, eval_count); None: counted from the text
        self.done = True  # False: a stream that ends cleanly without its `done: true` line
        self.tail_ms = 0  # a stream's body ends this long after its last line
        self.chunks = 4  # text lines in a stream before the last one
        super().__init__(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query: bytes = scope.get("query_string", b"")
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        self.requests.append(Request(scope["method"], target, headers, body))
        path = scope["path"]
        if scope["method"] == "GET" and path == "/api/tags":
            await _json(send, 200, {"models": [{"name": m, "model": m} for m in sorted(self.models)]})
            return
        if scope["method"] != "POST" or path not in ("/api/chat", "/api/generate", "/api/embed"):
            await _raw(send, 404, b"404 page not found", b"text/plain")
            return
        try:
            req = json.loads(body)
        except ValueError:
            await _json(send, 400, {"error": "invalid character in request body"})
            return
        model = req.get("model")
        if model not in self.models:
            await _json(send, 404, {"error": f'model "{model}" not found, try pulling it first'})
            return
        if path == "/api/embed":
            await _json(send, 200, self._embedded(req))
            return
        prompt, output = self.counts or (tokens_in(prompt_text(req)), tokens_in(REPLY))
        last = self._piece(path, model, "" if req.get("stream", True) else REPLY) | {
            "done": True,
            "done_reason": "stop",
            "total_duration": 4_883_583_458,
            "load_duration": 1_334_875,
            "prompt_eval_count": prompt,
            "prompt_eval_duration": 342_546_000,
            "eval_count": output,
            "eval_duration": 4_535_599_000,
        }
        if path == "/api/generate":
            last["context"] = list(range(1, prompt + output + 1))[:64]
        if req.get("stream", True) is False:
            await _json(send, 200, last)
            return
        await self._stream(send, path, model, last)

    def _piece(self, path: str, model: str, text: str) -> dict[str, Any]:
        head: dict[str, Any] = {"model": model, "created_at": CREATED_AT}
        if path == "/api/chat":
            return head | {"message": {"role": "assistant", "content": text}}
        return head | {"response": text}

    async def _stream(self, send: Send, path: str, model: str, last: dict[str, Any]) -> None:
        words = REPLY.split(" ")
        step = max(1, -(-len(words) // self.chunks))
        pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        lines = [self._piece(path, model, p if i == 0 else " " + p) | {"done": False} for i, p in enumerate(pieces)]
        if self.done:
            lines.append(last)
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
        await send(start)
        for line in lines:
            await send({"type": "http.response.body", "body": json.dumps(line).encode() + b"\n", "more_body": True})
        if self.tail_ms:
            await asyncio.sleep(self.tail_ms / 1000)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _embedded(self, req: dict[str, Any]) -> dict[str, Any]:
        inputs = req.get("input")
        texts = [inputs] if isinstance(inputs, str) else [str(t) for t in inputs or []]
        prompt = self.counts[0] if self.counts else sum(tokens_in(t) for t in texts)
        vectors = [[round(((sum(t.encode()) * (i + 3)) % 1000) / 1000 - 0.5, 4) for i in range(8)] for t in texts]
        return {
            "model": req["model"],
            "embeddings": vectors,
            "total_duration": 14_143_917,
            "load_duration": 1_019_500,
            "prompt_eval_count": prompt,
        }


async def _json(send: Send, status: int, body: Any) -> None:
    await _raw(send, status, json.dumps(body).encode(), b"application/json; charset=utf-8")


async def _raw(send: Send, status: int, data: bytes, ctype: bytes) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
