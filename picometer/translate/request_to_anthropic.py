"""An OpenAI chat/completions request as an Anthropic messages request (decisions: picometer.translate.requests)."""

from __future__ import annotations

import json
import re
from typing import Any

from picometer.metering.json_value import loads
from picometer.translate.untranslatable import Untranslatable, count, number, obj, only, seq, text

DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; an OpenAI call without one gets this many
ANTHROPIC_MAX_TEMPERATURE = 1.0  # OpenAI takes 0-2, Anthropic 0-1: higher values are clamped to 1

# Fields that only hint at price, speed, storage or logging: dropped, the answer is the same without them.
_HINTS = {
    "service_tier",
    "store",
    "metadata",
    "seed",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "prediction",
    "stream_options",
}
# Fields accepted only at their default value (which is what Anthropic does anyway).
_DEFAULTS: dict[str, Any] = {
    "n": 1,
    "logprobs": False,
    "top_logprobs": 0,
    "presence_penalty": 0,
    "frequency_penalty": 0,
    "logit_bias": {},
    "response_format": {"type": "text"},
    "modalities": ["text"],
    "verbosity": "medium",
}
_MAPPED = {
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stream",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "user",
    "safety_identifier",
}
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")  # what Anthropic takes as base64
_DATA_URL = re.compile(r"data:([\w.+-]+/[\w.+-]+);base64,(.*)", re.DOTALL)
_WHY = {
    "n": "Anthropic returns one answer per call",
    "logprobs": "Anthropic does not return token log probabilities",
    "top_logprobs": "Anthropic does not return token log probabilities",
    "presence_penalty": "Anthropic has no presence penalty",
    "frequency_penalty": "Anthropic has no frequency penalty",
    "logit_bias": "Anthropic has no logit bias",
    "response_format": "Anthropic has no JSON mode matching OpenAI's",
    "modalities": "Anthropic answers in text only",
    "verbosity": "Anthropic has no verbosity setting",
}


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    body = obj(body, "the request")
    for key, default in _DEFAULTS.items():
        if body.get(key) is not None and body[key] != default:
            raise Untranslatable(f"`{key}` = {json.dumps(body[key])[:80]}", _WHY[key])
    only(body, _MAPPED | _HINTS | set(_DEFAULTS), "", "Anthropic")
    system, messages = _messages(seq(body.get("messages"), "messages"))
    out: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": _max_tokens(body)}
    if system is not None:
        out["system"] = system
    out.update(_sampling(body.get("temperature"), body.get("top_p")))
    if body.get("stop") is not None:
        out["stop_sequences"] = _stop(body["stop"])
    if body.get("stream") is not None:
        out["stream"] = bool(body["stream"])
    user = body.get("user") or body.get("safety_identifier")
    if user is not None:
        out["metadata"] = {"user_id": text(user, "user")}
    tools = body.get("tools")
    if tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(seq(tools, "tools"))]
    choice = _tool_choice(body.get("tool_choice"), body.get("parallel_tool_calls"))
    if choice is not None and tools:
        out["tool_choice"] = choice
    return out


def _sampling(temperature: Any, top_p: Any) -> dict[str, float]:
    """Current Anthropic models take temperature or top_p, not both: a default (1) one is left out, else refused."""
    out = {}
    if temperature is not None:
        out["temperature"] = number(temperature, "temperature")
    if top_p is not None and number(top_p, "top_p") != 1:
        out["top_p"] = number(top_p, "top_p")
    if len(out) == 2:
        if out["temperature"] != 1:
            raise Untranslatable("`temperature` together with `top_p`", "current Anthropic models take only one")
        del out["temperature"]
    if "temperature" in out:
        out["temperature"] = min(out["temperature"], ANTHROPIC_MAX_TEMPERATURE)
    return out


def _max_tokens(body: dict[str, Any]) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        if body.get(key) is not None:
            return count(body[key], key)
    return DEFAULT_MAX_TOKENS


def _stop(stop: Any) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else seq(stop, "stop")
    out = [text(s, "stop") for s in sequences]
    if any(not s.strip() for s in out):
        raise Untranslatable("an empty or whitespace-only `stop` sequence", "Anthropic refuses those")
    return out


def _tool(tool: Any, i: int) -> dict[str, Any]:
    tool = obj(tool, f"tools[{i}]")
    if tool.get("type") != "function":
        raise Untranslatable(f"tools[{i}] of type {tool.get('type')!r}", "only function tools have a counterpart")
    fn = obj(tool.get("function"), f"tools[{i}].function")
    only(fn, ("name", "description", "parameters", "strict"), f"tools[{i}].function.", "Anthropic")
    out: dict[str, Any] = {"name": text(fn.get("name"), f"tools[{i}].function.name")}
    if fn.get("description") is not None:
        out["description"] = text(fn["description"], f"tools[{i}].function.description")
    params = fn.get("parameters")
    out["input_schema"] = obj(params, f"tools[{i}].function.parameters") if params is not None else _empty_schema()
    if fn.get("strict") is not None:
        out["strict"] = bool(fn["strict"])
    return out


def _empty_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}  # a tool without parameters takes none


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice is None:
        out = None
    elif choice in ("auto", "none"):
        out = {"type": choice}
    elif choice == "required":
        out = {"type": "any"}
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = obj(choice.get("function"), "tool_choice.function").get("name")
        out = {"type": "tool", "name": text(name, "tool_choice.function.name")}
    else:
        raise Untranslatable(f"`tool_choice` = {json.dumps(choice)[:80]}", "Anthropic has no counterpart for it")
    if parallel is False and (out is None or out["type"] != "none"):
        out = {**(out or {"type": "auto"}), "disable_parallel_tool_use": True}
    return out


def _messages(items: list[Any]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """The leading system and developer messages as `system`; the rest as alternating user/assistant turns."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, raw in enumerate(items):
        m = obj(raw, f"messages[{i}]")
        role = m.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            only(m, ("role", "content", "name"), f"{where}.", "Anthropic")
            if turns:
                raise Untranslatable(f"a {role} message after the conversation began ({where})", _LATE_SYSTEM)
            system += _text_parts(m.get("content"), where)
            continue
        if role == "user":
            only(m, ("role", "content", "name"), f"{where}.", "Anthropic")
            blocks = _user_content(m.get("content"), where)
        elif role == "assistant":
            only(m, ("role", "content", "name", "tool_calls", "refusal", "annotations"), f"{where}.", "Anthropic")
            blocks = _assistant_content(m, where)
        elif role == "tool":
            only(m, ("role", "content", "tool_call_id"), f"{where}.", "Anthropic")
            blocks = [_tool_result(m, where)]
            role = "user"
        else:
            raise Untranslatable(f"a message with role {role!r} ({where})", "Anthropic has only user and assistant")
        if not blocks:
            continue  # an empty assistant turn says nothing; Anthropic refuses empty content
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += blocks  # Anthropic wants roles to alternate
        else:
            turns.append({"role": role, "content": blocks})
    if not system:
        return None, turns
    if len(system) == 1:
        return system[0]["text"], turns
    return system, turns


_LATE_SYSTEM = "Anthropic takes system text only before the first turn, and moving it would change its meaning"


def _text_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out = []
    for j, raw in enumerate(seq(content, f"{where}.content")):
        part = obj(raw, f"{where}.content[{j}]")
        if part.get("type") not in ("text", "refusal"):
            raise Untranslatable(f"a {part.get('type')!r} part in {where}", "only text can go there")
        key = str(part["type"])
        only(part, ("type", key), f"{where}.content[{j}].", "Anthropic")
        out.append({"type": "text", "text": text(part.get(key), f"{where}.content[{j}].{key}")})
    return out


def _user_content(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    out = []
    for j, raw in enumerate(seq(content, f"{where}.content")):
        part = obj(raw, f"{where}.content[{j}]")
        kind = part.get("type")
        if kind == "text":
            out += _text_parts([part], where)
        elif kind == "image_url":
            out.append(_image(part, f"{where}.content[{j}]"))
        elif kind == "input_audio":
            raise Untranslatable(f"audio input ({where})", "Anthropic does not take audio")
        elif kind == "file":
            raise Untranslatable(f"a file part ({where})", "picometer does not translate documents or PDFs")
        else:
            raise Untranslatable(f"a {kind!r} part ({where})", "Anthropic has no counterpart for it")
    return out


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    only(part, ("type", "image_url"), f"{where}.", "Anthropic")
    image = obj(part.get("image_url"), f"{where}.image_url")
    only(image, ("url", "detail"), f"{where}.image_url.", "Anthropic")  # detail is a price hint
    url = text(image.get("url"), f"{where}.image_url.url")
    m = _DATA_URL.fullmatch(url)
    if m:
        if m.group(1) not in _IMAGE_TYPES:
            raise Untranslatable(f"a {m.group(1)} image ({where})", "Anthropic takes JPEG, PNG, GIF and WebP only")
        return {"type": "image", "source": {"type": "base64", "media_type": m.group(1), "data": m.group(2)}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise Untranslatable(f"an image URL that is neither http(s) nor base64 data ({where})", "Anthropic cannot load it")


def _assistant_content(m: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = m.get("content")
    blocks = [] if content is None else [b for b in _text_parts(content, where) if b["text"]]
    if m.get("refusal"):
        blocks.append({"type": "text", "text": text(m["refusal"], f"{where}.refusal")})
    for k, raw in enumerate(seq(m.get("tool_calls") or [], f"{where}.tool_calls")):
        call = obj(raw, f"{where}.tool_calls[{k}]")
        if call.get("type", "function") != "function":
            raise Untranslatable(f"a {call.get('type')!r} tool call ({where})", "only function calls cross")
        fn = obj(call.get("function"), f"{where}.tool_calls[{k}].function")
        blocks.append(
            {
                "type": "tool_use",
                "id": text(call.get("id"), f"{where}.tool_calls[{k}].id"),
                "name": text(fn.get("name"), f"{where}.tool_calls[{k}].function.name"),
                "input": arguments(fn.get("arguments"), f"{where}.tool_calls[{k}].function.arguments"),
            }
        )
    return blocks


def arguments(raw: Any, where: str) -> dict[str, Any]:
    """A tool call's arguments (a JSON string) as Anthropic's input object; empty means no arguments."""
    if not text(raw, where).strip():
        return {}
    try:
        value = loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise Untranslatable(f"tool call arguments that are not a JSON object ({where})", "Anthropic needs an object")
    return value


def _tool_result(m: dict[str, Any], where: str) -> dict[str, Any]:
    content = m.get("content")
    result: str | list[dict[str, Any]] = content if isinstance(content, str) else _text_parts(content, where)
    return {
        "type": "tool_result",
        "tool_use_id": text(m.get("tool_call_id"), f"{where}.tool_call_id"),
        "content": result,
    }
