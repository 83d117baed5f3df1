"""Token usage from provider responses and SSE streams. Pure: plain data in, plain data out."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from picometer.metering.sse import SSEEvent

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


@dataclass(frozen=True, slots=True)
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
    if isinstance(value, int) and not isinstance(value, bool):
        return min(max(value, 0), ceiling)
    return 0


def _money(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < 1e6:
        return float(value)
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, Mapping):
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
        # DeepSeek reports its cache hits as prompt_cache_hit_tokens; others under prompt_tokens_details.
        cached = _int(_get(u, "prompt_tokens_details", "cached_tokens")) or _int(u.get("prompt_cache_hit_tokens"))
        cache_write = _int(_get(u, "prompt_tokens_details", "cache_write_tokens"))
        reasoning = _int(_get(u, "completion_tokens_details", "reasoning_tokens"))
        audio_in = _int(_get(u, "prompt_tokens_details", "audio_tokens"))
        audio_out = _int(_get(u, "completion_tokens_details", "audio_tokens"))
    else:
        input_tokens = _int(u.get("input_tokens"))
        output_tokens = _int(u.get("output_tokens"))
        cached = _int(_get(u, "input_tokens_details", "cached_tokens"))
        cache_write = _int(_get(u, "input_tokens_details", "cache_write_tokens"))
        reasoning = _int(_get(u, "output_tokens_details", "reasoning_tokens"))
        audio_in = audio_out = 0
    cached = min(cached, input_tokens)
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        cache_write_tokens=min(cache_write, input_tokens - cached),
        output_tokens=output_tokens,
        reasoning_tokens=min(reasoning, output_tokens),
        reported_cost_usd=_reported_cost(u),
        audio_input_tokens=min(audio_in, input_tokens),
        audio_output_tokens=min(audio_out, output_tokens),
        tool_calls=_tools(tools or {}),
        service_tier=_tier(tier),
    )


def _reported_cost(u: Mapping[str, Any]) -> float | None:
    """OpenRouter's `cost` is what it bills; with your own key (BYOK) that is only its fee, and the provider
    bills `cost_details.upstream_inference_cost` on top."""
    cost = _money(u.get("cost"))
    if cost is None:
        return None
    upstream = _money(_get(u, "cost_details", "upstream_inference_cost"))
    if upstream is not None and u.get("is_byok") is not False:
        return cost + upstream
    return cost


def anthropic_usage(u: Mapping[str, Any]) -> Usage:
    """Anthropic's input_tokens exclude cache reads and writes; ours include them."""
    read = _int(u.get("cache_read_input_tokens"))
    write = _int(u.get("cache_creation_input_tokens"))
    write_1h = min(_int(_get(u, "cache_creation", "ephemeral_1h_input_tokens")), write)
    output = _int(u.get("output_tokens"))
    searches = _int(_get(u, "server_tool_use", "web_search_requests"), MAX_TOOL_CALLS)
    return Usage(
        input_tokens=_int(u.get("input_tokens")) + read + write,
        cached_input_tokens=read,
        cache_write_tokens=write,
        output_tokens=output,
        reasoning_tokens=min(_int(_get(u, "output_tokens_details", "thinking_tokens")), output),
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
            name = _RESPONSES_TOOL_ITEMS.get(str(_get(item, "type")))
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
            if _get(d, "modality") == "AUDIO":
                audio += _int(_get(d, "tokenCount"))
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


def _text_chars(obj: Any) -> int:
    return _text_size(obj, len)


def _text_size(obj: Any, measure: Callable[[str], int]) -> int:
    if isinstance(obj, str):
        return measure(obj)
    if isinstance(obj, Mapping):
        return sum(_text_size(v, measure) for v in obj.values())
    if isinstance(obj, list):
        return sum(_text_size(v, measure) for v in obj)
    return 0


# Text deltas carry no usage: their text is measured without decoding the JSON (the hot path of a stream).
_TEXT_DELTA_EVENTS = frozenset({"content_block_delta", "response.output_text.delta", "response.reasoning_text.delta"})
_TEXT_VALUE = re.compile(
    r'"(?:content|text|delta|arguments|refusal|thinking|partial_json|reasoning)":\s*"((?:[^"\\]|\\.)*)"'
)
_NEEDS_JSON = re.compile(r'"(?:usage|error)":\s*\{|"type":\s*"error"')

# Mid-stream error events, as the record's error_type.
_STREAM_ERRORS = {"overloaded_error": "overloaded", "rate_limit_error": "rate_limited", "api_error": "server_error"}


class StreamMeter:
    """Watches the events of one streamed response (SSE, or NDJSON lines for Ollama): the model, the usage, how
    much text went by, and whether the terminal event came (`[DONE]`, `message_stop`,
    `response.completed`/`incomplete`/`failed`, Gemini's chunk with a finishReason, Ollama's `done: true`)."""

    def __init__(self, shape: str, endpoint: str) -> None:
        self.shape = shape
        self.endpoint = endpoint
        self.usage: Usage | None = None
        self.model: str | None = None
        self.text_chars = 0
        self.events = 0
        self.terminal = False  # the stream's last event went by: the answer is complete
        self.error: str | None = None  # the provider reported a failure in the stream itself
        self._anthropic_usage: dict[str, Any] = {}
        self._tier: Any = None  # an OpenAI chunk's service_tier, for the usage chunk that follows

    def observe(self, event: SSEEvent) -> bool:
        """Fold one event in. True when it is a usage-only chunk (choices empty, usage set)."""
        self.events += 1
        if not event.data:
            return False
        if event.data == "[DONE]":
            self.terminal = self.terminal or self.shape == "openai"
            return False
        if self._plain_text(event):
            return False
        try:
            data = json.loads(event.data)
        except ValueError:
            return False
        if not isinstance(data, Mapping):
            return False
        if data.get("type") == "error" or (self.shape != "anthropic" and data.get("error")):
            kind = _get(data, "error", "type")
            self.error = self.error or _STREAM_ERRORS.get(kind if isinstance(kind, str) else "", "stream_error")
            return False
        if self.shape == "gemini":
            self._gemini(data)
            return False
        if self.shape == "ollama":
            self._ollama(data)
            return False
        if self.shape == "anthropic":
            self._anthropic(data)
            return False
        if self.endpoint == "responses":
            self._responses(data)
            return False
        return self._openai_chunk(data)

    def _plain_text(self, event: SSEEvent) -> bool:
        """A text delta (after the first chunk gave the model): count its text and skip the JSON decoding."""
        if event.event in _TEXT_DELTA_EVENTS or (
            self.shape == "openai" and self.endpoint != "responses" and self.model is not None
        ):
            if _NEEDS_JSON.search(event.data):
                return False
            self.text_chars += sum(len(m) for m in _TEXT_VALUE.findall(event.data))
            return True
        return False

    def _model_and_usage(self, envelope: Any) -> Mapping[str, Any] | None:
        """Takes the model a chunk, response or message names; returns its usage when it carries one."""
        model = _get(envelope, "model")
        if isinstance(model, str):
            self.model = model
        u = _get(envelope, "usage")
        return u if isinstance(u, Mapping) else None

    def _openai_chunk(self, data: Mapping[str, Any]) -> bool:
        u = self._model_and_usage(data)
        if "service_tier" in data:
            self._tier = data["service_tier"]
        choices = data.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                self.text_chars += _text_chars(_get(choice, "delta")) + _text_chars(_get(choice, "text"))
        if u is not None:
            self.usage = openai_usage(u, self._tier)
            return not choices
        return False

    def _responses(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            self.text_chars += len(data["delta"])
        elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
            response = data.get("response")
            u = self._model_and_usage(response)
            if u is not None:
                tools = responses_tools(_get(response, "output"))
                self.usage = openai_usage(u, _get(response, "service_tier"), tools)
            if kind != "response.created":
                # An incomplete answer (max_output_tokens reached) is what was asked for; a failed one is not.
                self.terminal = True
                if kind == "response.failed":
                    self.error = self.error or "response_failed"

    def _gemini(self, data: Mapping[str, Any]) -> None:
        """Each chunk may carry usageMetadata, cumulative; the last chunk carries a finishReason."""
        if isinstance(data.get("modelVersion"), str):
            self.model = data["modelVersion"]
        u = data.get("usageMetadata")
        if isinstance(u, Mapping):
            self.usage = gemini_usage(u)
        candidates = data.get("candidates")
        if isinstance(candidates, list):
            for c in candidates[:MAX_OUTPUT_ITEMS]:
                self.text_chars += _text_chars(_get(c, "content", "parts"))
                if _get(c, "finishReason"):
                    self.terminal = True

    def _ollama(self, data: Mapping[str, Any]) -> None:
        if isinstance(data.get("model"), str):
            self.model = data["model"]
        self.text_chars += _text_chars(_get(data, "message", "content")) + _text_chars(data.get("response"))
        if data.get("done") is True:
            self.usage = ollama_usage(data) or self.usage
            self.terminal = True

    def _anthropic(self, data: Mapping[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start":
            u = self._model_and_usage(data.get("message"))
            if u is not None:
                self._anthropic_usage = dict(u)
                self.usage = anthropic_usage(self._anthropic_usage)
        elif kind == "message_delta":
            # message_delta usage is cumulative: the last one wins, field by field, never summed.
            u = data.get("usage")
            if isinstance(u, Mapping):
                self._anthropic_usage.update({k: v for k, v in u.items() if v is not None})
                self.usage = anthropic_usage(self._anthropic_usage)
        elif kind == "content_block_delta":
            self.text_chars += _text_chars(data.get("delta")) - len(str(_get(data, "delta", "type") or ""))
        elif kind == "message_stop":
            self.terminal = True
