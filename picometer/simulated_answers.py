"""What the simulated provider answers, per API: the JSON body of each endpoint and the SSE events of each
stream, with usage counted by the simulator's own tokenizer (picometer.simulator serves them)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


def sim_tokens(text: str) -> int:
    """The simulator's own tokenizer: one token per started 4 characters."""
    return math.ceil(len(text) / 4)


def text_of(obj: Any) -> str:
    """Every string in a request part, joined; roles, types and model names are not what the user wrote."""
    if isinstance(obj, str):
        return obj
    if isinstance(obj, dict):
        return " ".join(text_of(v) for k, v in obj.items() if k not in ("role", "type", "model"))
    if isinstance(obj, list):
        return " ".join(text_of(v) for v in obj)
    return ""


@dataclass
class SimCall:
    """One call being answered: the JSON request, its headers (x-sim-* included) and the reply text."""

    req: dict[str, Any]
    headers: dict[str, str]
    reply: str

    @property
    def model(self) -> str:
        return str(self.req.get("model") or "sim-1")

    @property
    def input_tokens(self) -> int:
        parts = [self.req.get(k) for k in ("system", "instructions", "messages", "input", "prompt")]
        return max(1, sim_tokens(text_of(parts)))

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


def _openai_head(call: SimCall, id_: str, obj: str) -> dict[str, Any]:
    """The fields every OpenAI chat or completions answer and chunk opens with."""
    return {"id": id_, "object": obj, "created": int(time.time()), "model": call.model}


def _openai_stream_end(call: SimCall, fault: str, base: dict[str, Any]) -> Iterator[bytes]:
    """The usage chunk (only when the client asked for it) and [DONE]."""
    options = call.req.get("stream_options") or {}
    if options.get("include_usage") and fault != "no-usage":
        yield _sse({**base, "choices": [], "usage": call.openai_usage()})
    yield _sse("[DONE]")


def _chat(call: SimCall) -> dict[str, Any]:
    return {
        **_openai_head(call, "chatcmpl-sim", "chat.completion"),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": call.reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": call.openai_usage(),
    }


def _chat_events(call: SimCall, fault: str) -> Iterator[bytes]:
    base = _openai_head(call, "chatcmpl-sim", "chat.completion.chunk")
    first = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _sse({**base, "choices": [first]})
    for word in _words(call.reply):
        yield _sse({**base, "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]})
    yield _sse({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    yield from _openai_stream_end(call, fault, base)


def _completion(call: SimCall) -> dict[str, Any]:
    return {
        **_openai_head(call, "cmpl-sim", "text_completion"),
        "choices": [{"text": call.reply, "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": call.openai_usage(),
    }


def _completion_events(call: SimCall, fault: str) -> Iterator[bytes]:
    base = _openai_head(call, "cmpl-sim", "text_completion")
    for word in _words(call.reply):
        yield _sse({**base, "choices": [{"text": word, "index": 0, "logprobs": None, "finish_reason": None}]})
    yield from _openai_stream_end(call, fault, base)


def _response_obj(call: SimCall, status: str, with_usage: bool) -> dict[str, Any]:
    return {
        "id": "resp_sim",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": call.model,
        "output": []
        if status != "completed"
        else [
            {
                "type": "message",
                "id": "msg_sim",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": call.reply, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": call.responses_usage() if with_usage else None,
    }


def _responses(call: SimCall) -> dict[str, Any]:
    return _response_obj(call, "completed", True)


def _responses_events(call: SimCall, fault: str) -> Iterator[bytes]:
    seq = 0
    yield _sse(
        {
            "type": "response.created",
            "sequence_number": seq,
            "response": _response_obj(call, "in_progress", False),
        },
        "response.created",
    )
    for word in _words(call.reply):
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
            "response": _response_obj(call, "completed", fault != "no-usage"),
        },
        "response.completed",
    )


def _embeddings(call: SimCall) -> dict[str, Any]:
    inputs = call.req.get("input")
    items = inputs if isinstance(inputs, list) else [inputs]
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]} for i in range(len(items))],
        "model": call.model,
        "usage": {"prompt_tokens": call.input_tokens, "total_tokens": call.input_tokens},
    }


def _messages(call: SimCall) -> dict[str, Any]:
    return {
        "id": "msg_sim",
        "type": "message",
        "role": "assistant",
        "model": call.model,
        "content": [{"type": "text", "text": call.reply}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": call.anthropic_usage(call.output_tokens),
    }


def _messages_events(call: SimCall, fault: str) -> Iterator[bytes]:
    start = {**_messages(call), "content": [], "stop_reason": None, "usage": call.anthropic_usage(1)}
    if fault == "no-usage":
        del start["usage"]
    yield _sse({"type": "message_start", "message": start}, "message_start")
    yield _sse(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        "content_block_start",
    )
    yield _sse({"type": "ping"}, "ping")
    for word in _words(call.reply):
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
        delta["usage"] = {"output_tokens": call.output_tokens}
    yield _sse(delta, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")


# GPT Image output tokens per image by quality, for 1024x1024 (OpenAI's image generation guide).
_IMAGE_TOKENS = {"low": 272, "medium": 1056, "high": 4160}


def _images(call: SimCall) -> dict[str, Any]:
    n = call.req["n"] if isinstance(call.req.get("n"), int) else 1
    answer: dict[str, Any] = {
        "created": int(time.time()),
        "data": [{"url": f"https://images.example/sim-{i}.png"} for i in range(n)],
    }
    if str(call.req.get("model", "")).startswith("gpt-image"):  # token-billed models report usage
        text = len(str(call.req.get("prompt", ""))) // 4 + 1
        out = _IMAGE_TOKENS.get(str(call.req.get("quality")), _IMAGE_TOKENS["high"]) * n
        answer["usage"] = {
            "input_tokens": text,
            "input_tokens_details": {"text_tokens": text, "image_tokens": 0},
            "output_tokens": out,
            "total_tokens": text + out,
        }
    return answer


def _batch(call: SimCall) -> dict[str, Any]:
    return {"id": "batch_sim", "object": "batch", "status": "validating", "created_at": int(time.time())}


def _count_tokens(call: SimCall) -> dict[str, Any]:
    return {"input_tokens": call.input_tokens}


# The JSON answer of each endpoint, by its path after /v1.
ANSWERS: dict[str, Callable[[SimCall], dict[str, Any]]] = {
    "/chat/completions": _chat,
    "/completions": _completion,
    "/responses": _responses,
    "/embeddings": _embeddings,
    "/messages": _messages,
    "/messages/count_tokens": _count_tokens,
    "/images/generations": _images,
    "/batches": _batch,
    "/messages/batches": _batch,
}
# The SSE events of each endpoint that streams, given the x-sim-fault to act out.
EVENTS: dict[str, Callable[[SimCall, str], Iterator[bytes]]] = {
    "/chat/completions": _chat_events,
    "/completions": _completion_events,
    "/responses": _responses_events,
    "/messages": _messages_events,
}
