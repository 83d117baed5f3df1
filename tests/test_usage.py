"""Usage field semantics per API, and robustness against whatever a provider sends."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from picometer.metering.endpoints import classify
from picometer.metering.sse import SSEEvent
from picometer.metering.stream_meter import StreamMeter
from picometer.metering.usage import (
    Usage,
    anthropic_usage,
    from_response,
    openai_usage,
)


def ev(data: Any, event: str = "") -> SSEEvent:
    text = data if isinstance(data, str) else json.dumps(data)
    return SSEEvent(event, text, b"")


def test_openai_chat_usage_with_cache_and_reasoning() -> None:
    u = openai_usage(
        {
            "prompt_tokens": 1000,
            "completion_tokens": 300,
            "prompt_tokens_details": {"cached_tokens": 600},
            "completion_tokens_details": {"reasoning_tokens": 200},
        }
    )
    assert u == Usage(input_tokens=1000, cached_input_tokens=600, output_tokens=300, reasoning_tokens=200)


def test_openai_responses_usage_and_openrouter_cost() -> None:
    u = openai_usage(
        {
            "input_tokens": 50,
            "input_tokens_details": {"cached_tokens": 10},
            "output_tokens": 7,
            "output_tokens_details": {"reasoning_tokens": 3},
            "cost": 0.00042,
        }
    )
    assert (u.input_tokens, u.cached_input_tokens, u.output_tokens, u.reasoning_tokens) == (50, 10, 7, 3)
    assert u.reported_cost_usd == 0.00042


def test_anthropic_input_includes_cache_reads_and_writes() -> None:
    u = anthropic_usage(
        {"input_tokens": 20, "cache_read_input_tokens": 500, "cache_creation_input_tokens": 80, "output_tokens": 9}
    )
    assert u == Usage(input_tokens=600, cached_input_tokens=500, cache_write_tokens=80, output_tokens=9)


def test_anthropic_stream_uses_the_last_message_delta_not_a_sum() -> None:
    m = StreamMeter("anthropic", "messages")
    m.observe(
        ev(
            {
                "type": "message_start",
                "message": {
                    "model": "claude-haiku-4-5",
                    "usage": {"input_tokens": 30, "cache_read_input_tokens": 10, "output_tokens": 1},
                },
            }
        )
    )
    m.observe(ev({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "hello"}}))
    m.observe(ev({"type": "message_delta", "usage": {"output_tokens": 5}}))
    m.observe(ev({"type": "message_delta", "usage": {"output_tokens": 12}}))
    assert m.usage == Usage(input_tokens=40, cached_input_tokens=10, output_tokens=12)
    assert m.model == "claude-haiku-4-5" and m.text_chars == 5


def test_anthropic_message_delta_may_update_input_counts() -> None:
    m = StreamMeter("anthropic", "messages")
    m.observe(ev({"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}))
    m.observe(
        ev(
            {
                "type": "message_delta",
                "usage": {"input_tokens": 900, "cache_read_input_tokens": 100, "output_tokens": 40},
            }
        )
    )
    assert m.usage == Usage(input_tokens=1000, cached_input_tokens=100, output_tokens=40)


def test_openai_usage_only_chunk_is_flagged_and_counted() -> None:
    m = StreamMeter("openai", "chat/completions")
    assert not m.observe(ev({"model": "gpt-4o", "choices": [{"delta": {"content": "Hi!"}}], "usage": None}))
    assert m.observe(ev({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}))
    assert not m.observe(ev("[DONE]"))
    assert m.usage == Usage(input_tokens=4, output_tokens=2) and m.text_chars == 3 and m.model == "gpt-4o"


def test_responses_stream_usage_from_completed() -> None:
    m = StreamMeter("openai", "responses")
    m.observe(ev({"type": "response.output_text.delta", "delta": "abc"}))
    m.observe(
        ev(
            {
                "type": "response.completed",
                "response": {"model": "gpt-5", "usage": {"input_tokens": 8, "output_tokens": 3}},
            }
        )
    )
    assert m.usage == Usage(input_tokens=8, output_tokens=3) and m.model == "gpt-5" and m.text_chars == 3


def test_endpoints_are_recognised_by_shape_on_any_provider() -> None:
    chat = classify("v1/chat/completions", "POST")
    assert (chat.name, chat.shape, chat.metered) == ("chat/completions", "openai", True)
    messages = classify("v1/messages", "POST")
    assert (messages.name, messages.shape, messages.metered) == ("messages", "anthropic", True)
    assert classify("responses", "POST").metered and classify("embeddings", "POST").metered
    count = classify("v1/messages/count_tokens", "POST")
    assert count.free and not count.metered and not count.unmetered
    image = classify("images/generations", "POST")
    assert image.metered and image.flat and image.body == "json"
    assert classify("audio/transcriptions", "POST").body == "multipart"
    for name in ("batches", "files", "fine_tuning/jobs", "messages/batches", "realtime/sessions", "uploads"):
        assert classify(name, "POST").unmetered, name
    assert classify("models", "GET").free and classify("chat/completions", "GET").free


def test_stream_terminal_events_per_shape() -> None:
    chat = StreamMeter("openai", "chat/completions")
    chat.observe(ev({"choices": [{"delta": {"content": "hi"}}]}))
    assert not chat.terminal
    chat.observe(ev("[DONE]"))
    assert chat.terminal and chat.error is None
    msg = StreamMeter("anthropic", "messages")
    msg.observe(ev({"type": "message_delta", "usage": {"output_tokens": 3}}))
    assert not msg.terminal
    msg.observe(ev({"type": "message_stop"}))
    assert msg.terminal
    overloaded = StreamMeter("anthropic", "messages")
    overloaded.observe(ev({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    assert overloaded.error == "overloaded" and not overloaded.terminal
    for kind, error in (
        ("response.completed", None),
        ("response.incomplete", None),
        ("response.failed", "response_failed"),
    ):
        resp = StreamMeter("openai", "responses")
        resp.observe(ev({"type": "response.created", "response": {"model": "gpt-5"}}))
        assert not resp.terminal
        resp.observe(ev({"type": kind, "response": {"usage": {"input_tokens": 2, "output_tokens": 1}}}))
        assert resp.terminal and resp.error == error and resp.usage is not None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=8,
)
usage_like = st.dictionaries(
    st.sampled_from(
        [
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "output_tokens",
            "cache_read_input_tokens",
            "cache_creation_input_tokens",
            "prompt_tokens_details",
            "cost",
            "type",
            "usage",
            "message",
            "choices",
            "model",
            "response",
        ]
    ),
    json_values,
    max_size=6,
)


@given(usage_like)
def test_any_provider_answer_gives_non_negative_usage_or_none(body: dict[str, Any]) -> None:
    for kind in ("openai", "anthropic"):
        usage, model = from_response(kind, {"usage": body, "model": body.get("model")})
        assert usage is not None
        assert min(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens) >= 0
        assert usage.cached_input_tokens <= usage.input_tokens or kind == "anthropic"
        assert model is None or isinstance(model, str)


@given(st.lists(usage_like, max_size=6), st.sampled_from(["chat/completions", "responses", "messages"]))
def test_stream_meter_never_raises_on_garbage_events(events: list[dict[str, Any]], endpoint: str) -> None:
    kind = "anthropic" if endpoint == "messages" else "openai"
    m = StreamMeter(kind, endpoint)
    for data in events:
        m.observe(ev(data))
        m.observe(ev("{not json"))
    assert m.usage is None or m.usage.input_tokens >= 0
