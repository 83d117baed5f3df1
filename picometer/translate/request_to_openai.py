"""An Anthropic messages request as an OpenAI chat/completions request (decisions: picometer.translate.requests)."""

from __future__ import annotations

import json
from typing import Any

from picometer.translate.untranslatable import Untranslatable, count, number, obj, only, seq, text

OPENAI_MAX_STOP = 4  # OpenAI takes at most four stop sequences
MAX_TOKENS_FIELD = "max_completion_tokens"  # OpenAI's reasoning models refuse the older max_tokens

# Fields that only hint at price, speed or caching: dropped, the answer is the same without them.
_HINTS = {"cache_control", "service_tier", "speed"}
_MAPPED = {
    "model",
    "messages",
    "system",
    "max_tokens",
    "temperature",
    "top_p",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "output_config",
}
_WHY = {
    "top_k": "OpenAI has no top-k sampling",
    "thinking": "extended thinking has no counterpart in OpenAI chat completions",
    "container": "OpenAI has no code-execution container here",
    "mcp_servers": "OpenAI chat completions cannot call MCP servers",
    "context_management": "OpenAI chat completions do not edit the context",
    "inference_geo": "picometer will not move a call bound to a region to another provider",
    "output_config": "OpenAI has no matching effort or structured-output setting for this call",
}
_TOOL_KEYS = ("type", "name", "description", "input_schema", "strict", "cache_control", "eager_input_streaming")
_TEXT_KEYS = ("type", "text", "cache_control")


def to_openai(body: dict[str, Any], model: str, max_tokens_field: str = MAX_TOKENS_FIELD) -> dict[str, Any]:
    body = obj(body, "the request")
    for key, value in body.items():
        if key not in _MAPPED and key not in _HINTS and value is not None:
            raise Untranslatable(f"`{key}`", _WHY.get(key, "the OpenAI API has no counterpart for it"))
    if body.get("thinking") is not None and obj(body["thinking"], "thinking").get("type") != "disabled":
        raise Untranslatable("`thinking`", _WHY["thinking"])
    if body.get("output_config"):
        raise Untranslatable("`output_config`", _WHY["output_config"])
    max_tokens = count(body.get("max_tokens"), "max_tokens")
    if max_tokens == 0:
        raise Untranslatable("`max_tokens` = 0 (cache pre-warming)", "OpenAI answers with at least one token")
    messages = _system(body.get("system")) + _messages(seq(body.get("messages"), "messages"))
    out: dict[str, Any] = {"model": model, "messages": messages, max_tokens_field: max_tokens}
    if body.get("temperature") is not None:
        out["temperature"] = number(body["temperature"], "temperature")
    if body.get("top_p") is not None:
        out["top_p"] = number(body["top_p"], "top_p")
    stops = [text(s, "stop_sequences") for s in seq(body.get("stop_sequences") or [], "stop_sequences")]
    if len(stops) > OPENAI_MAX_STOP:
        raise Untranslatable(f"{len(stops)} `stop_sequences`", f"OpenAI takes at most {OPENAI_MAX_STOP}")
    if stops:
        out["stop"] = stops
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}  # else OpenAI streams no usage to meter or pass back
    user = obj(body.get("metadata") or {}, "metadata").get("user_id")
    if user is not None:
        out["user"] = text(user, "metadata.user_id")
    tools = seq(body.get("tools") or [], "tools")
    if tools:
        out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
        out.update(_tool_choice(body.get("tool_choice")))
    return out


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    parts = _text_blocks(system, "system")
    return [{"role": "system", "content": _joined(parts)}] if parts else []


def _text_blocks(blocks: Any, where: str) -> list[dict[str, Any]]:
    return [_text_block(raw, f"{where}[{j}]") for j, raw in enumerate(seq(blocks, where))]


def _text_block(raw: Any, where: str) -> dict[str, Any]:
    block = obj(raw, where)
    if block.get("type") != "text":
        raise Untranslatable(f"a {block.get('type')!r} block ({where})", "only text can go there")
    only(block, _TEXT_KEYS, f"{where}.", "OpenAI")  # citations are refused here: OpenAI cannot carry them
    return {"type": "text", "text": text(block.get("text"), f"{where}.text")}


def _joined(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One text part as a plain string, as an SDK would write it; several stay parts, so nothing is merged."""
    return parts[0]["text"] if len(parts) == 1 and parts[0]["type"] == "text" else parts


def _tool(tool: Any, i: int) -> dict[str, Any]:
    tool = obj(tool, f"tools[{i}]")
    if tool.get("type") not in (None, "custom"):
        raise Untranslatable(f"the {tool.get('type')} tool", "it runs on Anthropic's side and OpenAI has no such tool")
    only(tool, _TOOL_KEYS, f"tools[{i}].", "OpenAI")
    fn: dict[str, Any] = {"name": text(tool.get("name"), f"tools[{i}].name")}
    if tool.get("description") is not None:
        fn["description"] = text(tool["description"], f"tools[{i}].description")
    fn["parameters"] = obj(tool.get("input_schema"), f"tools[{i}].input_schema")
    if tool.get("strict") is not None:
        fn["strict"] = bool(tool["strict"])
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice is None:
        return {}
    choice = obj(choice, "tool_choice")
    kind = choice.get("type")
    only(choice, ("type", "name", "disable_parallel_tool_use"), "tool_choice.", "OpenAI")
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        out = {"tool_choice": "none"}
    elif kind == "tool":
        name = text(choice.get("name"), "tool_choice.name")
        out = {"tool_choice": {"type": "function", "function": {"name": name}}}
    else:
        raise Untranslatable(f"`tool_choice` of type {kind!r}", "OpenAI has no counterpart for it")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def _messages(items: list[Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(items):
        m = obj(raw, f"messages[{i}]")
        where = f"messages[{i}]"
        only(m, ("role", "content"), f"{where}.", "OpenAI")
        content = m.get("content")
        role = m.get("role")
        if role == "user":
            out += [{"role": "user", "content": content}] if isinstance(content, str) else _user(content, where)
        elif role == "assistant":
            out.append({"role": "assistant", "content": content} if isinstance(content, str) else _said(content, where))
        else:
            raise Untranslatable(f"a message with role {role!r} ({where})", "OpenAI has no counterpart for it")
    return out


def _user(content: Any, where: str) -> list[dict[str, Any]]:
    """A user turn: its tool results as `tool` messages, the rest as user messages, in their order."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, raw in enumerate(seq(content, f"{where}.content")):
        block = obj(raw, f"{where}.content[{j}]")
        kind = block.get("type")
        at = f"{where}.content[{j}]"
        if kind == "tool_result":
            if parts:
                out.append({"role": "user", "content": _joined(parts)})
                parts = []
            out.append(_tool_result(block, at))
        elif kind == "text":
            parts.append(_text_block(block, at))
        elif kind == "image":
            parts.append(_image(block, at))
        elif kind == "document":
            raise Untranslatable(f"a document block ({at})", "picometer does not translate documents or PDFs")
        else:
            raise Untranslatable(f"a {kind!r} block ({at})", "OpenAI has no counterpart for it")
    if parts:
        out.append({"role": "user", "content": _joined(parts)})
    return out


def _image(block: dict[str, Any], where: str) -> dict[str, Any]:
    only(block, ("type", "source", "cache_control"), f"{where}.", "OpenAI")
    source = obj(block.get("source"), f"{where}.source")
    if source.get("type") == "base64":
        media = text(source.get("media_type"), f"{where}.source.media_type")
        url = f"data:{media};base64,{text(source.get('data'), f'{where}.source.data')}"
    elif source.get("type") == "url":
        url = text(source.get("url"), f"{where}.source.url")
    else:
        raise Untranslatable(f"an image from a {source.get('type')!r} source ({where})", "OpenAI cannot load it")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    only(block, ("type", "tool_use_id", "content", "is_error", "cache_control"), f"{where}.", "OpenAI")
    content = block.get("content")
    if content is None:
        content = ""
    elif not isinstance(content, str):
        content = _joined(_text_blocks(content, f"{where}.content")) if content else ""
    return {"role": "tool", "tool_call_id": text(block.get("tool_use_id"), f"{where}.tool_use_id"), "content": content}


def _said(content: Any, where: str) -> dict[str, Any]:
    """An assistant turn: its text and its tool calls; thinking from earlier turns is left out."""
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, raw in enumerate(seq(content, f"{where}.content")):
        block = obj(raw, f"{where}.content[{j}]")
        kind = block.get("type")
        at = f"{where}.content[{j}]"
        if kind == "text":
            parts.append(_text_block(block, at))
        elif kind == "tool_use":
            only(block, ("type", "id", "name", "input", "cache_control"), f"{at}.", "OpenAI")
            fn = {"name": text(block.get("name"), f"{at}.name"), "arguments": _json(obj(block.get("input"), at))}
            calls.append({"id": text(block.get("id"), f"{at}.id"), "type": "function", "function": fn})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # Anthropic itself ignores thinking from earlier turns when thinking is off
        else:
            raise Untranslatable(f"a {kind!r} block ({at})", "OpenAI has no counterpart for it")
    message: dict[str, Any] = {"role": "assistant", "content": _joined(parts) if parts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False)
