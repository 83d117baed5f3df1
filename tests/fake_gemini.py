"""A loopback Gemini API (generativelanguage.googleapis.com) for tests, speaking the REST API as Google documents
it (https://ai.google.dev/api) and as the google-genai SDK sends and parses it:

    POST /{v1|v1beta}/models/{model}:generateContent          JSON GenerateContentResponse
    POST /{v1|v1beta}/models/{model}:streamGenerateContent?alt=sse
                                                              SSE, `data: {chunk}\\r\\n\\r\\n`; every chunk carries
                                                              usageMetadata with the prompt count, the last one has
                                                              finishReason "STOP" and the final counts
    POST /{v1|v1beta}/models/{model}:embedContent             {"embedding": {"values": [...]}, "usageMetadata"?}
    POST /{v1|v1beta}/models/{model}:batchEmbedContents       {"embeddings": [...], "usageMetadata"?}
    POST /{v1|v1beta}/models/{model}:countTokens              {"totalTokens": N, "promptTokensDetails": [...]}

The key is read from `x-goog-api-key` or `?key=`; with `keys` given, any other key gets Google's 400
API_KEY_INVALID, none at all its 403. Errors have Google's shape {"error": {"code", "message", "status"}}.

    with FakeGemini(keys={"AIza-real"}) as gemini:
        gemini.usage = GeminiUsage(prompt=250_000, thoughts=40)   # what usageMetadata reports from now on
        ...  # calls
        gemini.requests[0].path, gemini.requests[0].headers       # what reached the provider
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from picometer.asgi import Receive, Scope, Send
from picometer.simulator import request_body
from tests.replay import Request
from tests.servers import AppServer

PATH = re.compile(r"^/(v1|v1beta)/models/([A-Za-z0-9._-]+):([A-Za-z]+)$")
REPLY = "The greenhouse is at 18 degrees and the soil is moist, no watering needed tonight"


@dataclass(frozen=True)
class GeminiUsage:
    """What usageMetadata reports; a None count is worked out from the request (about 4 characters a token)."""

    prompt: int | None = None  # promptTokenCount (includes the cached part)
    candidates: int | None = None  # candidatesTokenCount
    thoughts: int = 0  # thoughtsTokenCount (absent when 0, as Google leaves it out)
    cached: int = 0  # cachedContentTokenCount
    tool_use: int = 0  # toolUsePromptTokenCount


def tokens_in(text: str) -> int:
    return max(1, (len(text) + 3) // 4)


def text_of(value: Any) -> str:
    """Every `text` string inside a request body, in order."""
    if isinstance(value, dict):
        return " ".join(filter(None, (text_of(v) if k != "text" else str(v) for k, v in value.items())))
    if isinstance(value, list):
        return " ".join(filter(None, (text_of(v) for v in value)))
    return ""


def usage_metadata(usage: GeminiUsage, prompt: int, candidates: int | None) -> dict[str, Any]:
    """Google's usageMetadata: candidates None for a chunk before the last (which carries only the prompt)."""
    meta: dict[str, Any] = {"promptTokenCount": prompt}
    if candidates is not None:
        meta["candidatesTokenCount"] = candidates
    total = prompt + (candidates or 0) + usage.tool_use + (usage.thoughts if candidates is not None else 0)
    meta["totalTokenCount"] = total
    if usage.cached:
        meta["cachedContentTokenCount"] = usage.cached
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.cached}]
    meta["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if usage.tool_use:
        meta["toolUsePromptTokenCount"] = usage.tool_use
        meta["toolUsePromptTokensDetails"] = [{"modality": "TEXT", "tokenCount": usage.tool_use}]
    if candidates is not None and usage.thoughts:
        meta["thoughtsTokenCount"] = usage.thoughts
    return meta


def error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return {"error": body}


class FakeGemini(AppServer):
    def __init__(self, keys: set[str] | None = None) -> None:
        self.keys = frozenset(keys or ())
        self.requests: list[Request] = []
        self.usage = GeminiUsage()
        self.embed_usage = True  # the current API reports usageMetadata.promptTokenCount on embeddings; older did not
        self.finish = True  # False: a stream that ends cleanly without its last (finishReason) chunk
        self.tail_ms = 0  # a stream's body ends this long after its last chunk
        self.chunks = 4  # text chunks in a stream
        self.running = False  # True: chunks before the last carry the output counts so far (cumulative, not deltas)
        self._answered = 0
        super().__init__(self)

    def key_of(self, i: int) -> tuple[str | None, str | None]:
        """The key request i carried: (x-goog-api-key header, ?key= query parameter)."""
        req = self.requests[i]
        query = parse_qs(urlsplit(req.path).query)
        return req.headers.get("x-goog-api-key"), next(iter(query.get("key", [])), None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await request_body(scope, receive, send)
        if body is None:
            return
        raw_path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query_bytes: bytes = scope.get("query_string", b"")
        query = parse_qs(query_bytes.decode("latin-1"))
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        target = raw_path + ("?" + query_bytes.decode("latin-1") if query_bytes else "")
        self.requests.append(Request(scope["method"], target, headers, body))
        key = headers.get("x-goog-api-key") or (query.get("key") or [""])[0]
        if not key:
            msg = (
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API."
            )
            await _json(send, 403, error(403, "PERMISSION_DENIED", msg))
            return
        if self.keys and key not in self.keys:
            info = {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
            await _json(
                send, 400, error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.", [info])
            )
            return
        match = PATH.match(scope["path"])
        if scope["method"] != "POST" or match is None:
            await _json(send, 404, error(404, "NOT_FOUND", f"Method not found: {scope['method']} {scope['path']}"))
            return
        _, model, method = match.groups()
        try:
            req = json.loads(body)
        except ValueError:
            await _json(send, 400, error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
            return
        self._answered += 1
        if method == "generateContent":
            await _json(send, 200, self._whole(model, req))
        elif method == "streamGenerateContent" and query.get("alt") == ["sse"]:
            await self._stream(send, model, req)
        elif method == "countTokens":
            n = tokens_in(text_of(req))
            await _json(send, 200, {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]})
        elif method == "embedContent":
            await _json(send, 200, self._embedded([req]) | {"embedding": _vector(text_of(req))})
        elif method == "batchEmbedContents":
            requests = req.get("requests") or []
            vectors = [_vector(text_of(r)) for r in requests]
            await _json(send, 200, self._embedded(requests) | {"embeddings": vectors})
        else:
            await _json(send, 400, error(400, "INVALID_ARGUMENT", f"Unsupported method {method} here"))

    def _counts(self, req: dict[str, Any]) -> tuple[GeminiUsage, int, int]:
        usage = self.usage
        prompt = usage.prompt if usage.prompt is not None else tokens_in(text_of(req.get("contents")))
        candidates = usage.candidates if usage.candidates is not None else tokens_in(REPLY)
        return usage, prompt, candidates

    def _chunk(self, model: str, text: str, meta: dict[str, Any], finish: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": meta,
            "modelVersion": model,
            "responseId": f"fake-gemini-{self._answered:06d}",
        }

    def _whole(self, model: str, req: dict[str, Any]) -> dict[str, Any]:
        usage, prompt, candidates = self._counts(req)
        return self._chunk(model, REPLY, usage_metadata(usage, prompt, candidates), finish=True)

    async def _stream(self, send: Send, model: str, req: dict[str, Any]) -> None:
        usage, prompt, candidates = self._counts(req)
        words = REPLY.split(" ")
        step = max(1, -(-len(words) // self.chunks))
        pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
        pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
        n = len(pieces)
        early = [usage_metadata(usage, prompt, candidates * (i + 1) // n if self.running else None) for i in range(n)]
        events = [self._chunk(model, p, early[i], finish=False) for i, p in enumerate(pieces[:-1])]
        events.append(self._chunk(model, pieces[-1], usage_metadata(usage, prompt, candidates), finish=True))
        if not self.finish:
            events.pop()
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]}
        await send(start)
        for event in events:
            data = b"data: " + json.dumps(event, separators=(",", ": ")).encode() + b"\r\n\r\n"
            await send({"type": "http.response.body", "body": data, "more_body": True})
        if self.tail_ms:
            await asyncio.sleep(self.tail_ms / 1000)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _embedded(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        if not self.embed_usage:
            return {}
        n = sum(tokens_in(text_of(r)) for r in requests)
        return {"usageMetadata": {"promptTokenCount": n, "promptTokenDetails": [{"modality": "TEXT", "tokenCount": n}]}}


def _vector(text: str) -> dict[str, Any]:
    seed = sum(text.encode()) or 1
    return {"values": [round(((seed * (i + 7)) % 1000) / 1000 - 0.5, 4) for i in range(8)]}


async def _json(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json; charset=UTF-8"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data, "more_body": False})
