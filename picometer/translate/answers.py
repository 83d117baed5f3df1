"""A whole (non-streamed) answer of the substitute's API in the client's API shape, error bodies included.

The answer names `model_asked` as its model (what the client's code asked for; the record says what served it).
Anthropic thinking blocks are left out (OpenAI chat has no place for them); any other block picometer cannot
carry (it refused the features that produce them) raises Untranslatable rather than lose part of an answer.
"""

from __future__ import annotations

import json
from typing import Any

from picometer.translate.errors import error, is_error
from picometer.translate.request_to_anthropic import arguments
from picometer.translate.requests import check_shapes
from picometer.translate.stops import finish_reason, stop_reason
from picometer.translate.untranslatable import Untranslatable, obj, seq, text
from picometer.translate.usage import anthropic_usage, openai_usage


def answer(
    body: dict[str, Any], from_shape: str, to_shape: str, model_asked: str, *, created: int = 0
) -> dict[str, Any]:
    """The answer `body` of API `from_shape` as API `to_shape` would have given it; `created` (Unix seconds) is
    OpenAI's timestamp, which Anthropic answers do not carry."""
    check_shapes(from_shape, to_shape)
    if is_error(body, from_shape):
        return error(body, from_shape, to_shape)
    if from_shape == to_shape:
        return obj(body, "the answer")
    if to_shape == "openai":
        return _to_openai(obj(body, "the answer"), model_asked, created)
    return _to_anthropic(obj(body, "the answer"), model_asked)


def _to_openai(body: dict[str, Any], model: str, created: int) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, raw in enumerate(seq(body.get("content", []), "content")):
        block = obj(raw, f"content[{i}]")
        kind = block.get("type")
        if kind == "text":
            texts.append(text(block.get("text"), f"content[{i}].text"))
        elif kind == "tool_use":
            args = json.dumps(obj(block.get("input"), f"content[{i}].input"), ensure_ascii=False)
            fn = {"name": text(block.get("name"), f"content[{i}].name"), "arguments": args}
            calls.append({"id": text(block.get("id"), f"content[{i}].id"), "type": "function", "function": fn})
        elif kind not in ("thinking", "redacted_thinking"):
            raise Untranslatable(f"a {kind!r} block in the answer", "OpenAI chat answers have no place for it")
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None, "refusal": None}
    if calls:
        message["tool_calls"] = calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(body.get("stop_reason"))}
    return {
        "id": body["id"] if isinstance(body.get("id"), str) else "chatcmpl-picometer",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [choice],
        "usage": openai_usage(body.get("usage")),
    }


def _to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    choices = seq(body.get("choices"), "choices")
    if not choices:
        raise Untranslatable("an answer without choices", "there is no message to give")
    choice = obj(choices[0], "choices[0]")
    message = obj(choice.get("message"), "choices[0].message")
    for field in ("audio", "function_call"):
        if message.get(field) is not None:
            raise Untranslatable(f"`{field}` in the answer", "Anthropic answers have no place for it")
    content: list[dict[str, Any]] = []
    said = message.get("content")
    if said:
        content.append({"type": "text", "text": text(said, "choices[0].message.content")})
    reason = stop_reason(choice.get("finish_reason"))
    if message.get("refusal"):
        content.append({"type": "text", "text": text(message["refusal"], "choices[0].message.refusal")})
        reason = "refusal"
    for k, raw in enumerate(seq(message.get("tool_calls") or [], "choices[0].message.tool_calls")):
        where = f"choices[0].message.tool_calls[{k}]"
        call = obj(raw, where)
        fn = obj(call.get("function"), f"{where}.function")
        content.append(
            {
                "type": "tool_use",
                "id": text(call.get("id"), f"{where}.id"),
                "name": text(fn.get("name"), f"{where}.function.name"),
                "input": arguments(fn.get("arguments"), f"{where}.function.arguments"),
            }
        )
    return {
        "id": body["id"] if isinstance(body.get("id"), str) else "msg_picometer",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": None,
        "usage": anthropic_usage(body.get("usage")),
    }
