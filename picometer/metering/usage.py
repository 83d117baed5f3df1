"""Token usage from provider responses and SSE streams. Pure: plain data in, plain data out."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from picometer.frozen import frozen

# Request parts billed as input: OpenAI and Anthropic, then Gemini (camelCase as its SDK sends, snake_case as
# its REST API also takes; `content` and `requests` are the embedding calls').
PROMPT_FIELDS = (
    "messages",
    "input",
    "prompt",
    "system",
    "instructions",
    "tools",
    "contents",
    "systemInstruction",
    "system_instruction",
    "content",
    "requests",
)

CHARS_PER_TOKEN = 4  # the usual rule of thumb for English text; used only when a provider reports nothing


@frozen
class Usage:
    input_tokens: int = 0  # includes cached reads, cache writes and audio input
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0  # includes the 1-hour writes
    output_tokens: int = 0  # includes reasoning and audio output
    reasoning_tokens: int = 0
    reported_cost_usd: float | None = None  # a provider's own price for the call (OpenRouter)
    cache_write_1h_tokens: int = 0  # Anthropic's 1-hour cache writes, billed at 2x input instead of 1.25x
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    tool_calls: tuple[tuple[str, int], ...] = ()  # server-side tools billed per use: (("web_search", 3),)
    service_tier: str | None = None  # the tier the provider says it served (and bills) the call at


MAX_TOKENS = 100_000_000  # more than any call can use (the largest context is a few million): a provider bug
MAX_TOOL_CALLS = 10_000  # per call: more is a provider bug


def _int(value: Any, ceiling: int = MAX_TOKENS) -> int:
    """A count as the provider wrote it; absurd ones (1e400, 10**30, negative, text) held to a sane range."""
    if type(value) is int and 0 <= value <= ceiling:  # parsed JSON's counts: no bool, nothing to hold back
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), ceiling)
    return 0


def _money(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e6:
        return float(value)
    return None


def dig(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):  # parsed JSON: a dict, and no ABC check on the hot path
            return None
        obj = obj.get(key)
    return obj


def _tier(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 32 else None


def _tools(counts: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((name, min(n, MAX_TOOL_CALLS)) for name, n in counts.items() if n > 0))


def openai_usage(u: Mapping[str, Any], tier: Any = None, tools: Mapping[str, int] | None = None) -> Usage:
    """Chat/completions use prompt_/completion_tokens; responses/embeddings use input_/output_tokens.
    `tier` is the answer's service_tier; `tools` the server-side tool calls counted in its output."""
    if "prompt_tokens" in u or "completion_tokens" in u:
        input_tokens = _int(u.get("prompt_tokens"))
        output_tokens = _int(u.get("completion_tokens"))
        prompt, completion = _details(u, "prompt_tokens_details"), _details(u, "completion_tokens_details")
        # DeepSeek reports its cache hits as prompt_cache_hit_tokens; others under prompt_tokens_details.
        cached = _int(prompt.get("cached_tokens")) or _int(u.get("prompt_cache_hit_tokens"))
        cache_write = _int(prompt.get("cache_write_tokens"))
        reasoning = _int(completion.get("reasoning_tokens"))
        audio_in = _int(prompt.get("audio_tokens"))
        audio_out = _int(completion.get("audio_tokens"))
    else:
        input_tokens = _int(u.get("input_tokens"))
        output_tokens = _int(u.get("output_tokens"))
        details = _details(u, "input_tokens_details")
        cached = _int(details.get("cached_tokens"))
        cache_write = _int(details.get("cache_write_tokens"))
        reasoning = _int(_details(u, "output_tokens_details").get("reasoning_tokens"))
        audio_in = audio_out = 0
    cached = min(cached, input_tokens)
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=min(cache_write, input_tokens - cached),
        output_tokens=output_tokens,
        reasoning_tokens=min(reasoning, output_tokens),
        reported_cost_usd=_reported_cost(u) if "cost" in u else None,
        audio_input_tokens=min(audio_in, input_tokens),
        audio_output_tokens=min(audio_out, output_tokens),
        tool_calls=_tools(tools) if tools else (),
        service_tier=_tier(tier),
    )


_NO_DETAILS: dict[str, Any] = {}


def _details(u: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    """A usage's nested counts (prompt_tokens_details...), or none when it is not a JSON object."""
    found = dig(u, key)
    return found if isinstance(found, dict) else _NO_DETAILS


def _reported_cost(u: Mapping[str, Any]) -> float | None:
    """OpenRouter's `cost` is what it bills; with your own key (BYOK) that is only its fee, and the provider
    bills `cost_details.upstream_inference_cost` on top."""
    cost = _money(u.get("cost"))
    if cost is None:
        return None
    upstream = _money(dig(u, "cost_details", "upstream_inference_cost"))
    if upstream is not None and u.get("is_byok") is not False:
        return cost + upstream
    return cost


def anthropic_usage(u: Mapping[str, Any]) -> Usage:
    """Anthropic's input_tokens exclude cache reads and writes; ours include them."""
    read = _int(u.get("cache_read_input_tokens"))
    write = _int(u.get("cache_creation_input_tokens"))
    write_1h = min(_int(dig(u, "cache_creation", "ephemeral_1h_input_tokens")), write)
    output = _int(u.get("output_tokens"))
    searches = _int(dig(u, "server_tool_use", "web_search_requests"), MAX_TOOL_CALLS)
    return Usage(
        input_tokens=_int(u.get("input_tokens")) + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        reasoning_tokens=min(_int(dig(u, "output_tokens_details", "thinking_tokens")), output),
        cache_write_1h_tokens=write_1h,
        tool_calls=_tools({"web_search": searches}),
        service_tier=_tier(u.get("service_tier")),
    )


# Responses output items that are server-side tool calls billed per use, by the record's tool name.
_RESPONSES_TOOL_ITEMS = {"web_search_call": "web_search", "file_search_call": "file_search"}
MAX_OUTPUT_ITEMS = 10_000  # items of one answer looked at for tool calls; more is garbage


def responses_tools(output: Any) -> dict[str, int]:
    """Server-side tool calls in a Responses answer's `output` items."""
    counts: dict[str, int] = {}
    if isinstance(output, list):
        for item in output[:MAX_OUTPUT_ITEMS]:
            name = _RESPONSES_TOOL_ITEMS.get(str(dig(item, "type")))
            if name is not None:
                counts[name] = counts.get(name, 0) + 1
    return counts


def gemini_usage(u: Mapping[str, Any]) -> Usage:
    """Gemini's usageMetadata: thoughts and tool-use prompts are billed but counted apart from the prompt and
    the candidates; ours fold them into input and output."""
    prompt = _int(u.get("promptTokenCount"))
    tool_prompt = _int(u.get("toolUsePromptTokenCount"))
    thoughts = _int(u.get("thoughtsTokenCount"))
    input_tokens = prompt + tool_prompt
    output_tokens = _int(u.get("candidatesTokenCount")) + thoughts
    audio = 0
    details = u.get("promptTokensDetails")
    if isinstance(details, list):
        for d in details[:16]:  # one entry per modality
            if dig(d, "modality") == "AUDIO":
                audio += _int(dig(d, "tokenCount"))
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=min(_int(u.get("cachedContentTokenCount")), input_tokens),
        output_tokens=output_tokens,
        reasoning_tokens=thoughts,
        audio_input_tokens=min(audio, input_tokens),
    )


def ollama_usage(body: Mapping[str, Any]) -> Usage | None:
    """Ollama's counts sit on the answer itself (the `done` line of a stream); none before it."""
    if "prompt_eval_count" not in body and "eval_count" not in body:
        return None
    return Usage(input_tokens=_int(body.get("prompt_eval_count")), output_tokens=_int(body.get("eval_count")))


def _gemini_answer(body: Any) -> tuple[Usage | None, str | None]:
    """A Gemini answer, or the JSON array a stream without alt=sse sends: the last usage wins (it is cumulative)."""
    usage: Usage | None = None
    model: str | None = None
    for item in body[-MAX_OUTPUT_ITEMS:] if isinstance(body, list) else [body]:
        if not isinstance(item, Mapping):
            continue
        if isinstance(item.get("modelVersion"), str):
            model = item["modelVersion"]
        u = item.get("usageMetadata")
        if isinstance(u, Mapping):
            usage = gemini_usage(u)
    return usage, model


def from_response(shape: str, body: Any) -> tuple[Usage | None, str | None]:
    """(usage, response model) from a whole JSON response body of an API of this shape."""
    if shape == "gemini":
        return _gemini_answer(body)
    if not isinstance(body, Mapping):
        return None, None
    if shape == "ollama":
        model = body.get("model") if isinstance(body.get("model"), str) else None
        return ollama_usage(body), model
    model = body.get("model") if isinstance(body.get("model"), str) else None
    u = body.get("usage")
    if not isinstance(u, Mapping):
        return None, model
    if shape == "anthropic":
        return anthropic_usage(u), model
    return openai_usage(u, body.get("service_tier"), responses_tools(body.get("output"))), model


def estimate_tokens(chars: int) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def request_text_chars(body: Mapping[str, Any]) -> int:
    """Characters of prompt text in a request: the basis of input estimates when usage is missing."""
    return _request_text(body, len)


def request_text_bytes(body: Mapping[str, Any]) -> int:
    """UTF-8 bytes of prompt text in a request: the basis of worst-case input for budgets."""
    return _request_text(body, _utf8_len)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _request_text(body: Mapping[str, Any], measure: Callable[[str], int]) -> int:
    return sum(_text_size(body.get(key), measure) for key in PROMPT_FIELDS)


def text_chars(obj: Any) -> int:
    return _text_size(obj, len)


def _text_size(obj: Any, measure: Callable[[str], int]) -> int:
    if isinstance(obj, str):
        return measure(obj)
    if isinstance(obj, Mapping):
        return sum(_text_size(v, measure) for v in obj.values())
    if isinstance(obj, list):
        return sum(_text_size(v, measure) for v in obj)
    return 0
