"""What providers bill besides tokens, and audio rates the bundled price data lacks. Pure.

Each number carries the public page it comes from; `picometer prices` prints them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from picometer.metering.limits import positive_int


@dataclass(frozen=True, slots=True)
class Fee:
    usd: float  # per use
    source: str


# Server-side tools billed per use (the tokens they add are billed as tokens on top).
WEB_SEARCH = Fee(0.010, "docs.anthropic.com/en/docs/agents-and-tools/tool-use/web-search-tool: $10 per 1,000 searches")
OPENAI_WEB_SEARCH = Fee(0.010, "openai.com/api/pricing: web search tool calls, $10.00 / 1k calls")
OPENAI_WEB_SEARCH_PREVIEW = Fee(
    0.025, "openai.com/api/pricing: web search preview on non-reasoning models, $25.00 / 1k calls"
)
OPENAI_FILE_SEARCH = Fee(0.0025, "openai.com/api/pricing: file search tool calls, $2.50 / 1k calls")

# OpenAI's search models in Chat Completions search the web on every call, billed per call by
# web_search_options.search_context_size (default medium) on top of the tokens. openai.com/api/pricing, "Web
# search" (March 2025): gpt-4o search $30 / $35 / $50 per 1k calls (low / medium / high context), gpt-4o-mini
# search $25 / $27.50 / $30; OpenRouter still lists $35 / 1k for gpt-4o-search-preview. A search model newer than
# these (gpt-5-search-api, ...) is charged its family's row (mini or not): never less than a known one.
_SEARCH_MODEL = re.compile(r"(?:.*/)?gpt-[\w.-]*search-(?:preview|api)")
_CHAT_SEARCH_SOURCE = "openai.com/api/pricing: web search, gpt-4o{} search, {} context, ${} / 1k calls"
CHAT_SEARCH: dict[tuple[bool, str], Fee] = {
    (mini, size): Fee(usd / 1000, _CHAT_SEARCH_SOURCE.format("-mini" if mini else "", size, f"{usd:g}"))
    for mini, table in ((False, {"low": 30, "medium": 35, "high": 50}), (True, {"low": 25, "medium": 27.5, "high": 30}))
    for size, usd in table.items()
}
_CONTEXT = "search_context_size:"  # how request_tools() passes a chat search's context size on

# The most per-use fees one call can run up when the request sets no limit of its own: picometer writes this
# limit into the request (Anthropic `max_uses`, OpenAI Responses `max_tool_calls`) when a cap guards the call.
DEFAULT_TOOL_USES = 10

# Request tool types that bill per use, by the name the record counts them under.
_ANTHROPIC_TOOLS = re.compile(r"web_search_\d+")
_OPENAI_TOOLS = {
    "web_search": "web_search",
    "web_search_preview": "web_search",
    "web_search_2025_08_26": "web_search",
    "web_search_preview_2025_03_11": "web_search",
    "file_search": "file_search",
}
_REASONING_MODEL = re.compile(r"(?:.*/)?(?:o\d|gpt-5)")  # billed the lower preview search fee


def tool_fee(shape: str, tool: str, model: str | None, request_tools: Iterable[str] = ()) -> Fee:
    """The per-use price of one server-side tool call of this API shape."""
    if shape == "anthropic":
        return WEB_SEARCH
    if tool == "file_search":
        return OPENAI_FILE_SEARCH
    if is_search_model(model):
        size = next((t.removeprefix(_CONTEXT) for t in request_tools if t.startswith(_CONTEXT)), "medium")
        return chat_search_fee(model or "", size)
    preview = any(t.startswith("web_search_preview") for t in request_tools)
    if preview and not _REASONING_MODEL.match((model or "").lower()):
        return OPENAI_WEB_SEARCH_PREVIEW
    return OPENAI_WEB_SEARCH


def tools_cost(shape: str, calls: Iterable[tuple[str, int]], model: str | None, request_tools: Iterable[str]) -> float:
    asked = tuple(request_tools)
    return round(float(sum(n * tool_fee(shape, name, model, asked).usd for name, n in calls)), 12)


def chat_search_fee(model: str, size: str) -> Fee:
    """A search model's fee per call at this search_context_size (an unknown size at the dearest, "high")."""
    mini = "mini" in model.lower()
    return CHAT_SEARCH.get((mini, size)) or CHAT_SEARCH[(False, "high")]


def is_search_model(model: str | None) -> bool:
    """One of OpenAI's Chat Completions models that search the web on every call."""
    return bool(model) and _SEARCH_MODEL.match(str(model).lower()) is not None


def chat_search(
    tool_calls: tuple[tuple[str, int], ...], endpoint: str, model: str | None
) -> tuple[tuple[str, int], ...]:
    """A chat call to a search model searched once, though its answer does not say so: the calls billed."""
    if endpoint != "chat/completions" or not is_search_model(model) or any(n == "web_search" for n, _ in tool_calls):
        return tool_calls
    return tuple(sorted((*tool_calls, ("web_search", 1))))


def _tool_type(kind: Any) -> bool:
    return isinstance(kind, str) and not kind.startswith(_CONTEXT)  # never mistaken for the context size


def request_tools(body: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The types of the tools a request offers the model, and a chat search's context size (as "search_context_size:
    low|medium|high"; an unknown size is taken as high)."""
    if body is None:
        return ()
    tools, options = body.get("tools"), body.get("web_search_options")
    found = (
        tuple(t["type"] for t in tools[:128] if isinstance(t, Mapping) and _tool_type(t.get("type")))
        if isinstance(tools, list)
        else ()
    )
    if isinstance(options, Mapping):
        size = options.get("search_context_size", "medium")
        found += (_CONTEXT + (size if size in ("low", "medium", "high") else "high"),)
    return found


def billed_tools(shape: str, body: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(record tool name, tool definition) for each per-use-billed tool the request offers."""
    found = []
    tools = body.get("tools")
    for t in tools[:128] if isinstance(tools, list) else ():
        kind = t.get("type") if isinstance(t, Mapping) else None
        if not isinstance(kind, str):
            continue
        if shape == "anthropic" and _ANTHROPIC_TOOLS.fullmatch(kind):
            found.append(("web_search", t))
        elif shape == "openai" and kind in _OPENAI_TOOLS:
            found.append((_OPENAI_TOOLS[kind], t))
    return found


def max_tool_uses(shape: str, body: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """The most per-use-billed tool calls the request allows, by tool name (after `limit_tool_uses`)."""
    tools = billed_tools(shape, body)
    if not tools:
        return ()
    if shape == "anthropic":
        total = sum(positive_int(t.get("max_uses")) or DEFAULT_TOOL_USES for _, t in tools)
        return (("web_search", total),)
    # Responses' max_tool_calls bounds all built-in tool calls together: each could be the dearest kind.
    limit = positive_int(body.get("max_tool_calls")) or DEFAULT_TOOL_USES
    names = sorted({name for name, _ in tools})
    dearest = "web_search" if "web_search" in names else names[0]
    return ((dearest, limit),)


def limit_tool_uses(shape: str, endpoint: str, body: dict[str, Any]) -> bool:
    """Write a per-use limit into a request whose billed tools have none, so its worst case is bounded.
    True when the body changed."""
    tools = billed_tools(shape, body)
    if not tools:
        return False
    if shape == "anthropic":
        changed = False
        for _, t in tools:
            if positive_int(t.get("max_uses")) is None and isinstance(t, dict):
                t["max_uses"] = DEFAULT_TOOL_USES
                changed = True
        return changed
    if endpoint == "responses" and positive_int(body.get("max_tool_calls")) is None:
        body["max_tool_calls"] = DEFAULT_TOOL_USES
        return True
    return False


@dataclass(frozen=True, slots=True)
class AudioRates:
    input: float  # per 1M audio tokens
    output: float
    source: str


# Audio token rates of models whose entry in the bundled price data has none (it would price audio as text).
AUDIO_RATES: Mapping[str, AudioRates] = {
    "gpt-4o-audio-preview": AudioRates(
        40.0, 80.0, "openai.com/api/pricing: gpt-4o-audio-preview audio $40 / $80 per 1M"
    ),
    "gpt-4o-mini-audio-preview": AudioRates(
        10.0, 20.0, "openai.com/api/pricing: gpt-4o-mini-audio-preview audio $10 / $20 per 1M"
    ),
}
# An audio model not in the table: the dearest audio rates OpenAI has charged (gpt-4o-audio-preview-2024-10-01).
DEAREST_AUDIO = AudioRates(100.0, 200.0, "conservative: the dearest audio rates published ($100 / $200 per 1M)")


def audio_rates(model: str) -> AudioRates:
    name = model.lower().rsplit("/", 1)[-1]
    for prefix, rates in AUDIO_RATES.items():
        if name.startswith(prefix):
            return rates
    return DEAREST_AUDIO
