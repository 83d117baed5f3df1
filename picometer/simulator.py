"""A simulated provider: OpenAI- and Anthropic-compatible, streaming, with usage, latency and faults.

`picometer demo` and the tests use it in place of a real provider. Per-request behaviour is set by
headers the client sends (picometer forwards them untouched):
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
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def sim_tokens(text: str) -> int:
    """The simulator's own tokenizer: one token per started 4 characters."""
    return math.ceil(len(text) / 4)


def _text_of(obj: Any) -> str:
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return " ".join(_text_of(v) for k, v in obj.items() if k not in ("role", "type", "model"))
    if isinstance(obj, list):
        return " ".join(_text_of(v) for v in obj)
    return ""


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
        if scope["type"] == "lifespan":
            while (msg := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
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
        reply = self._reply(req)
        ctx = _Ctx(req, headers, reply)
        handler = {
            "/chat/completions": _chat,
            "/completions": _completion,
            "/responses": _responses,
            "/embeddings": _embeddings,
            "/messages": _messages,
            "/messages/count_tokens": _count_tokens,
            "/images/generations": _images,
            "/batches": _batch,
            "/messages/batches": _batch,
        }.get(path)
        if handler is None:
            await _json(send, 404, {"error": {"type": "not_found", "message": f"no route {path}"}})
            return
        if req.get("stream") is True and path not in ("/embeddings", "/messages/count_tokens"):
            chunk_bytes, tail_s = (
                int(headers.get("x-sim-chunk-bytes", "0")),
                int(headers.get("x-sim-tail-ms", "0")) / 1000,
            )
            await self._stream(send, ctx, path, fault, chunk_bytes, tail_s)
            return
        payload = handler(ctx)
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
        prompt = _text_of(req.get("messages") or req.get("input") or req.get("prompt") or "")
        if "PONG" in prompt:
            return "PONG"
        words = [w for w in prompt.split() if w][-4:] or ["nothing"]
        text = " ".join(["Simulated", "answer", "about", *words] + ["lorem"] * self.settings.words)
        limit = req.get("max_tokens") or req.get("max_completion_tokens") or req.get("max_output_tokens")
        if isinstance(limit, int) and limit > 0:
            text = text[: limit * 4]
        return text

    async def _stream(self, send: Send, ctx: _Ctx, path: str, fault: str, chunk_bytes: int, tail_s: float) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
            }
        )
        events = list(
            {
                "/chat/completions": _chat_events,
                "/completions": _completion_events,
                "/responses": _responses_events,
                "/messages": _messages_events,
            }[path](ctx, fault)
        )
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


@dataclass
class _Ctx:
    req: dict[str, Any]
    headers: dict[str, str]
    reply: str

    @property
    def model(self) -> str:
        return str(self.req.get("model") or "sim-1")

    @property
    def input_tokens(self) -> int:
        parts = [self.req.get(k) for k in ("system", "instructions", "messages", "input", "prompt")]
        return max(1, sim_tokens(_text_of(parts)))

    @property
    def output_tokens(self) -> int:
        return sim_tokens(self.reply) + self.reasoning

    @property
    def cached(self) -> int:
        return min(int(self.headers.get("x-sim-cached", "0")), self.input_tokens)

    @property
    def cache_write(self) -> int:
        return int(self.headers.get("x-sim-cache-write", "0"))

    @property
    def reasoning(self) -> int:
        return int(self.headers.get("x-sim-reasoning", "0"))

    def openai_usage(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached},
            "completion_tokens_details": {"reasoning_tokens": self.reasoning},
        }

    def responses_usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    def anthropic_usage(self, output: int) -> dict[str, Any]:
        # Anthropic counts cache reads and writes apart from input_tokens.
        return {
            "input_tokens": max(self.input_tokens - self.cached - self.cache_write, 0),
            "cache_read_input_tokens": self.cached,
            "cache_creation_input_tokens": self.cache_write,
            "output_tokens": output,
        }


def _words(text: str) -> Iterator[str]:
    parts = text.split(" ")
    for i, word in enumerate(parts):
        yield word if i == 0 else " " + word


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + (data if isinstance(data, str) else json.dumps(data)) + "\n\n").encode()


def _chat(ctx: _Ctx) -> dict[str, Any]:
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": ctx.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ctx.reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": ctx.openai_usage(),
    }


def _chat_events(ctx: _Ctx, fault: str) -> Iterator[bytes]:
    base = {
        "id": "chatcmpl-sim",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": ctx.model,
    }
    yield _sse(
        {
            **base,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
        }
    )
    for word in _words(ctx.reply):
        yield _sse({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    options = ctx.req.get("stream_options") or {}
    if options.get("include_usage") and fault != "no-usage":
        yield _sse({**base, "choices": [], "usage": ctx.openai_usage()})
    yield _sse("[DONE]")


def _completion(ctx: _Ctx) -> dict[str, Any]:
    return {
        "id": "cmpl-sim",
        "object": "text_completion",
        "created": int(time.time()),
        "model": ctx.model,
        "choices": [{"text": ctx.reply, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": ctx.openai_usage(),
    }


def _completion_events(ctx: _Ctx, fault: str) -> Iterator[bytes]:
    base = {"id": "cmpl-sim", "object": "text_completion", "created": int(time.time()), "model": ctx.model}
    for word in _words(ctx.reply):
        yield _sse({**base, "choices": [{"text": word, "index": 0, "logprobs": None, "finish_reason": None}]})
    options = ctx.req.get("stream_options") or {}
    if options.get("include_usage") and fault != "no-usage":
        yield _sse({**base, "choices": [], "usage": ctx.openai_usage()})
    yield _sse("[DONE]")


def _response_obj(ctx: _Ctx, status: str, with_usage: bool) -> dict[str, Any]:
    return {
        "id": "resp_sim",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": ctx.model,
        "output": []
        if status != "completed"
        else [
            {
                "type": "message",
                "id": "msg_sim",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": ctx.reply, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": ctx.responses_usage() if with_usage else None,
    }


def _responses(ctx: _Ctx) -> dict[str, Any]:
    return _response_obj(ctx, "completed", True)


def _responses_events(ctx: _Ctx, fault: str) -> Iterator[bytes]:
    seq = 0
    yield _sse(
        {
            "type": "response.created",
            "sequence_number": seq,
            "response": _response_obj(ctx, "in_progress", False),
        },
        "response.created",
    )
    for word in _words(ctx.reply):
        seq += 1
        yield _sse(
            {
                "type": "response.output_text.delta",
                "sequence_number": seq,
                "item_id": "msg_sim",
                "output_index": 0,
                "content_index": 0,
                "delta": word,
            },
            "response.output_text.delta",
        )
    yield _sse(
        {
            "type": "response.completed",
            "sequence_number": seq + 1,
            "response": _response_obj(ctx, "completed", fault != "no-usage"),
        },
        "response.completed",
    )


def _embeddings(ctx: _Ctx) -> dict[str, Any]:
    inputs = ctx.req.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]} for i in range(len(items))],
        "model": ctx.model,
        "usage": {"prompt_tokens": ctx.input_tokens, "total_tokens": ctx.input_tokens},
    }


def _messages(ctx: _Ctx) -> dict[str, Any]:
    return {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": ctx.model,
        "content": [{"type": "text", "text": ctx.reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": ctx.anthropic_usage(ctx.output_tokens),
    }


def _messages_events(ctx: _Ctx, fault: str) -> Iterator[bytes]:
    start = {**_messages(ctx), "content": [], "stop_reason": None, "usage": ctx.anthropic_usage(1)}
    if fault == "no-usage":
        del start["usage"]
    yield _sse({"type": "message_start", "message": start}, "message_start")
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    yield _sse({"type": "ping"}, "ping")
    for word in _words(ctx.reply):
        yield _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}},
            "content_block_delta",
        )
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
    }
    if fault != "no-usage":
        delta["usage"] = {"output_tokens": ctx.output_tokens}
    yield _sse(delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


# GPT Image output tokens per image by quality, for 1024x1024 (OpenAI's image generation guide).
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}


def _images(ctx: _Ctx) -> dict[str, Any]:
    n = ctx.req["n"] if isinstance(ctx.req.get("n"), int) else 1
    answer: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{"url": f"https://images.example/sim-{i}.png"} for i in range(n)],
    }
    if str(ctx.req.get("model", "")).startswith("gpt-image"):  # token-billed models report usage
        text = len(str(ctx.req.get("prompt", ""))) // 4 + 1
        out = _IMAGE_TOKENS.get(str(ctx.req.get("quality")), _IMAGE_TOKENS["high"]) * n
        answer["usage"] = {
            "input_tokens": text,
            "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
            "output_tokens": out,
            "total_tokens": text + out,
        }
    return answer


def _batch(ctx: _Ctx) -> dict[str, Any]:
    return {"id": "batch_sim", "object": "batch", "status": "validating", "created_at": int(time.time())}


def _count_tokens(ctx: _Ctx) -> dict[str, Any]:
    return {"input_tokens": ctx.input_tokens}


async def _json(send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    await _raw(send, status, json.dumps(body).encode(), b"application/json", extra)


async def _raw(
    send: Send, status: int, body: bytes, ctype: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
