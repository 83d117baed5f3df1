"""Gemini's and Ollama's own APIs, the pure parts: which calls are metered, their usage, their streams' framing
and terminal events, their output limits and worst case, their key in the query, and refusals in their shape."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.config import ProviderConfig, Secret
from picometer.gateway.forward import upstream_headers, upstream_query
from picometer.gateway.refusals import error_body, shape_for_refusal
from picometer.gateway.tags import presented_key
from picometer.metering.endpoints import classify
from picometer.metering.limits import GEMINI_DYNAMIC_THINKING, apply_cap, field_value
from picometer.metering.ndjson import NDJSONParser
from picometer.metering.sse import EventTooLarge, SSEEvent
from picometer.metering.stream_meter import StreamMeter
from picometer.metering.usage import from_response
from picometer.metering.worst import worst_usage

GEMINI = "https://generativelanguage.googleapis.com"


@pytest.mark.parametrize(
    ("rest", "name", "metered", "free", "model"),
    [
        ("v1beta/models/gemini-2.5-flash:generateContent", "generateContent", True, False, "gemini-2.5-flash"),
        ("v1/models/gemini-2.5-pro:streamGenerateContent", "streamGenerateContent", True, False, "gemini-2.5-pro"),
        ("v1beta/models/gemini-embedding-001:embedContent", "embedContent", True, False, "gemini-embedding-001"),
        ("v1beta/models/gemini-embedding-001:batchEmbedContents", "batchEmbedContents", True, False, None),
        ("v1beta/models/gemini-2.5-flash:countTokens", "countTokens", False, True, "gemini-2.5-flash"),
        ("v1beta/models/gemini-2.5-flash:batchGenerateContent", None, False, False, None),
        ("api/chat", "api/chat", True, False, None),
        ("api/generate", "api/generate", True, False, None),
        ("api/embed", "api/embed", True, False, None),
        ("v1beta/openai/chat/completions", "chat/completions", True, False, None),
    ],
)
def test_native_endpoints_are_recognised_on_any_provider(
    rest: str, name: str | None, metered: bool, free: bool, model: str | None
) -> None:
    e = classify(rest, "POST")
    assert (e.metered, e.free) == (metered, free)
    if name is not None:
        assert e.name == name
    if model is not None:
        assert e.model == model


def test_gemini_usage_folds_thoughts_and_tool_prompts_in() -> None:
    answer = {
        "candidates": [{"content": {"parts": [{"text": "hi"}]}, "finishReason": "STOP"}],
        "usageMetadata": {
            "promptTokenCount": 1000,
            "cachedContentTokenCount": 400,
            "toolUsePromptTokenCount": 50,
            "candidatesTokenCount": 200,
            "thoughtsTokenCount": 300,
            "totalTokenCount": 1550,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 900}, {"modality": "AUDIO", "tokenCount": 100}],
        },
        "modelVersion": "gemini-2.5-flash",
    }
    usage, model = from_response("gemini", answer)
    assert model == "gemini-2.5-flash"
    assert usage is not None
    assert (usage.input_tokens, usage.cached_input_tokens, usage.audio_input_tokens) == (1050, 400, 100)
    assert (usage.output_tokens, usage.reasoning_tokens) == (500, 300)
    # A stream without alt=sse is one JSON array: the last usage is the whole call's.
    early = {"usageMetadata": {"promptTokenCount": 1000, "candidatesTokenCount": 3}}
    usage2, _ = from_response("gemini", [early, answer])
    assert usage2 == usage


def test_ollama_usage_from_the_answer_and_none_without_counts() -> None:
    usage, model = from_response(
        "ollama", {"model": "llama3.2", "done": True, "prompt_eval_count": 26, "eval_count": 298}
    )
    assert model == "llama3.2" and usage is not None
    assert (usage.input_tokens, usage.output_tokens) == (26, 298)
    assert from_response("ollama", {"model": "llama3.2", "embedding": [0.1]})[0] is None


def _sse(data: dict[str, Any]) -> SSEEvent:
    return SSEEvent("", json.dumps(data), b"")


def test_gemini_stream_usage_is_cumulative_and_the_finish_chunk_is_terminal() -> None:
    m = StreamMeter("gemini", "streamGenerateContent")
    m.observe(
        _sse({"candidates": [{"content": {"parts": [{"text": "Hel"}]}}], "usageMetadata": {"promptTokenCount": 8}})
    )
    assert not m.terminal
    m.observe(
        _sse(
            {
                "candidates": [{"content": {"parts": [{"text": "lo"}]}, "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 8, "candidatesTokenCount": 2, "thoughtsTokenCount": 5},
                "modelVersion": "gemini-2.5-flash",
            }
        )
    )
    assert m.terminal and m.model == "gemini-2.5-flash" and m.text_chars == 5
    assert m.usage is not None and (m.usage.input_tokens, m.usage.output_tokens) == (8, 7)


def test_ollama_stream_ends_at_done_and_an_error_line_is_an_error() -> None:
    m = StreamMeter("ollama", "api/chat")
    m.observe(_sse({"model": "llama3.2", "message": {"role": "assistant", "content": "Hi"}, "done": False}))
    assert not m.terminal and m.usage is None
    m.observe(_sse({"model": "llama3.2", "done": True, "prompt_eval_count": 9, "eval_count": 4}))
    assert m.terminal and m.usage is not None and m.usage.output_tokens == 4
    broken = StreamMeter("ollama", "api/generate")
    broken.observe(_sse({"error": "model runner has unexpectedly stopped"}))
    assert broken.error == "stream_error" and not broken.terminal


@given(st.lists(st.dictionaries(st.text(max_size=5), st.integers()), max_size=8), st.lists(st.integers(0, 400)))
def test_ndjson_any_split_gives_the_same_lines_and_keeps_every_byte(
    objs: list[dict[str, int]], cuts: list[int]
) -> None:
    body = b"".join(json.dumps(o).encode() + b"\n" for o in objs)
    points = sorted({c % (len(body) + 1) for c in cuts})
    p = NDJSONParser()
    events = []
    last = 0
    for c in [*points, len(body)]:
        events += p.feed(body[last:c])
        last = c
    events += p.close()
    assert [json.loads(e.data) for e in events] == objs
    assert b"".join(e.raw for e in events) == body


def test_ndjson_line_without_end_past_the_bound_is_refused() -> None:
    p = NDJSONParser(max_event_bytes=1000)
    with pytest.raises(EventTooLarge):
        p.feed(b"x" * 1001)
    assert NDJSONParser().close() == []


def test_gemini_cap_writes_max_output_tokens_in_the_spelling_the_body_uses() -> None:
    camel: dict[str, Any] = {"contents": [], "generationConfig": {"temperature": 0}}
    assert apply_cap(camel, "gemini", "generateContent", GEMINI, 512, "clamp")
    assert camel["generationConfig"] == {"temperature": 0, "maxOutputTokens": 512}
    snake: dict[str, Any] = {"contents": [], "generation_config": {"max_output_tokens": 9000}}
    assert apply_cap(snake, "gemini", "generateContent", GEMINI, 512, "clamp")
    assert field_value(snake, "generation_config.max_output_tokens") == 512
    ollama: dict[str, Any] = {"model": "llama3.2", "options": {"num_predict": -1}}
    assert apply_cap(ollama, "ollama", "api/chat", "http://127.0.0.1:11434", 256, "clamp")
    assert ollama["options"]["num_predict"] == 256


def test_gemini_worst_case_adds_thinking_and_counts_candidates() -> None:
    contents = [{"role": "user", "parts": [{"text": "x" * 300}]}]
    plain = {
        "contents": contents,
        "generationConfig": {"maxOutputTokens": 1000, "thinkingConfig": {"thinkingBudget": 0}},
    }
    assert worst_usage(plain, "gemini", "generateContent").output_tokens == 1000
    budget = {
        "contents": contents,
        "generationConfig": {"maxOutputTokens": 1000, "candidateCount": 2, "thinkingConfig": {"thinkingBudget": 500}},
    }
    assert worst_usage(budget, "gemini", "generateContent").output_tokens == 3000
    dynamic = {"contents": contents, "generationConfig": {"maxOutputTokens": 1000}}
    assert worst_usage(dynamic, "gemini", "generateContent").output_tokens == 1000 + GEMINI_DYNAMIC_THINKING
    assert worst_usage(dynamic, "gemini", "generateContent").input_tokens >= 100  # the text counts
    audio = {"contents": [{"parts": [{"inlineData": {"mimeType": "audio/mp3", "data": "AAAA"}}]}]}
    assert worst_usage(audio, "gemini", "generateContent").audio_input_tokens > 0


def test_gemini_key_in_the_query_is_read_and_swapped_in_place() -> None:
    assert presented_key({}, b"alt=sse&key=pm-virtual") == "pm-virtual"
    assert presented_key({"x-goog-api-key": "pm-h"}) == "pm-h"
    assert upstream_query(b"alt=sse&key=pm-virtual", Secret("AIza/real")) == b"alt=sse&key=AIza%2Freal"
    assert upstream_query(b"alt=sse", Secret("AIza")) == b"alt=sse"
    provider = ProviderConfig(kind="gemini", base_url=GEMINI)
    sent = [(b"x-goog-api-key", b"pm-virtual"), (b"content-type", b"application/json")]
    header = dict(upstream_headers(sent, provider, Secret("AIza"), "gemini"))
    assert header[b"x-goog-api-key"] == b"AIza"
    in_query = dict(
        upstream_headers([(b"content-type", b"application/json")], provider, Secret("AIza"), "gemini", True)
    )
    assert b"x-goog-api-key" not in in_query and b"authorization" not in in_query


def test_refusals_come_in_gemini_and_ollama_shapes() -> None:
    gemini = json.loads(error_body("gemini", "budget_exceeded", "over the cap", 429))
    assert gemini == {
        "error": {"code": 429, "message": "over the cap", "status": "RESOURCE_EXHAUSTED", "type": "budget_exceeded"}
    }
    assert json.loads(error_body("ollama", "workflow_paused", "paused", 429)) == {
        "error": "paused",
        "type": "workflow_paused",
    }
    assert shape_for_refusal(None, None, {"x-goog-api-key": "k"}, "/x") == "gemini"
    assert shape_for_refusal(None, None, {}, "/g/v1beta/models/m:generateContent") == "gemini"
