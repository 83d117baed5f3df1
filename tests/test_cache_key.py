"""The response cache's keys and rules: which requests may be answered from the cache, and under what key."""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.cache.key import cache_key, cacheable, canonical

DIGEST = hashlib.sha256(b"pm-garden-0123456789").hexdigest()
OTHER_DIGEST = hashlib.sha256(b"pm-kitchen-0123456789").hexdigest()
CHAT: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "temperature": 0,
    "max_tokens": 50,
    "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "heartbeat: ok?"}],
}
MESSAGES: dict[str, Any] = {
    "model": "claude-haiku-4-5",
    "temperature": 0,
    "max_tokens": 50,
    "messages": [{"role": "user", "content": "heartbeat: ok?"}],
}
FUNCTION_TOOL = {"type": "function", "function": {"name": "read_gauge", "parameters": {"type": "object"}}}


def key(body: dict[str, Any], **changes: Any) -> str:
    parts: dict[str, Any] = {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "workflow": "garden",
        "virtual_key_digest": DIGEST,
        "endpoint": "chat/completions",
        "stream": False,
        "body": body,
    }
    headers = changes.pop("headers", None)
    query = changes.pop("query", "")
    return cache_key(**(parts | changes), headers=headers, query=query)


# ---------------------------------------------------------------- keys


def test_the_same_request_gets_the_same_key_whatever_its_key_order_and_whitespace() -> None:
    sent = json.dumps(CHAT, indent=4)
    reordered = json.dumps(dict(reversed(list(CHAT.items()))), separators=(",", ":"))
    assert key(json.loads(sent)) == key(json.loads(reordered)) == key(CHAT)
    assert len(key(CHAT)) == 64 and int(key(CHAT), 16) >= 0


@pytest.mark.parametrize(
    "changes",
    [
        {"workflow": "kitchen"},
        {"virtual_key_digest": OTHER_DIGEST},
        {"virtual_key_digest": ""},
        {"provider": "azure"},
        {"model": "gpt-4o"},
        {"stream": True},
        {"endpoint": "completions"},
        {"headers": {"OpenAI-Beta": "assistants=v2"}},
        {"query": "api-version=2024-10-21"},
    ],
)
def test_keys_never_cross_workflows_keys_providers_models_or_the_stream_flag(changes: dict[str, Any]) -> None:
    assert key(CHAT, **changes) != key(CHAT)


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.0},  # kept as written: an API that checks types may answer 0.0 differently
        {"max_tokens": 51},
        {"messages": [{"role": "user", "content": "heartbeat: ok!"}]},
        {"seed": 7},
        {"n": 2},
        {"stream_options": {"include_usage": True}},  # the stream's last chunk differs
        {"service_tier": "flex"},  # echoed in the answer
        {"response_format": {"type": "json_object"}},
        {"tools": [FUNCTION_TOOL]},
        {"top_p": 0.5},
        {"logprobs": True},
        {"some_future_field": 1},  # not known: kept in the key
    ],
)
def test_any_field_that_changes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    assert key(CHAT | change) != key(CHAT)


@pytest.mark.parametrize(
    ("endpoint", "field"),
    [
        ("chat/completions", {"user": "end-user-42"}),
        ("chat/completions", {"metadata": {"job": "nightly"}}),
        ("chat/completions", {"safety_identifier": "u-9"}),
        ("chat/completions", {"prompt_cache_key": "garden"}),
        ("embeddings", {"user": "end-user-42"}),
        ("messages", {"metadata": {"user_id": "u-9"}}),
    ],
)
def test_fields_that_cannot_change_the_answer_are_left_out(endpoint: str, field: dict[str, Any]) -> None:
    assert key(CHAT | field, endpoint=endpoint) == key(CHAT, endpoint=endpoint)


def test_the_responses_api_keeps_every_field_because_its_answer_echoes_them() -> None:
    body = {"model": "gpt-4o-mini", "temperature": 0, "input": "heartbeat: ok?"}
    for field in ({"user": "u"}, {"metadata": {"job": "nightly"}}, {"safety_identifier": "u"}):
        assert key(body | field, endpoint="responses") != key(body, endpoint="responses")


def test_only_headers_that_change_the_answer_count_and_their_names_ignore_case() -> None:
    versioned = key(MESSAGES, endpoint="messages", headers={"anthropic-version": "2023-06-01"})
    assert key(MESSAGES, endpoint="messages", headers={"Anthropic-Version": "2023-06-01"}) == versioned
    assert (
        key(
            MESSAGES,
            endpoint="messages",
            headers={"anthropic-version": "2023-06-01", "User-Agent": "curl/8", "x-request-id": "abc"},
        )
        == versioned
    )
    beta = {"anthropic-version": "2023-06-01", "anthropic-beta": "context-1m-2025-08-07"}
    assert key(MESSAGES, endpoint="messages", headers=beta) != versioned


def test_a_credential_in_the_query_is_no_part_of_the_key_but_the_api_version_is() -> None:
    assert key(CHAT, query="api-version=2024-10-21&key=AIza-secret") == key(CHAT, query="api-version=2024-10-21")
    assert key(CHAT, query="key=AIza-one") == key(CHAT, query="key=AIza-two") == key(CHAT)
    assert key(CHAT, query="api-version=2024-10-21") != key(CHAT, query="api-version=2025-01-01")


def test_a_raw_key_is_refused_in_place_of_its_digest() -> None:
    with pytest.raises(ValueError, match="digest"):
        key(CHAT, virtual_key_digest="pm-garden-0123456789")
    with pytest.raises(ValueError, match="digest"):
        key(CHAT, virtual_key_digest="sk-proj-" + "a" * 56)


# ---------------------------------------------------------------- canonical JSON

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


def shuffled(value: Any, rnd: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rnd) for v in value]
    return value


@given(JSON, st.randoms(use_true_random=False), st.sampled_from([None, 0, 2, "\t"]), st.booleans())
def test_canonical_json_is_one_text_per_value_whatever_the_order_and_whitespace(
    value: Any, rnd: random.Random, indent: Any, ascii_only: bool
) -> None:
    sent = json.dumps(shuffled(value, rnd), indent=indent, ensure_ascii=ascii_only)
    assert canonical(json.loads(sent)) == canonical(value)
    assert json.loads(canonical(value)) == value, "nothing is lost"


@given(JSON, JSON)
def test_canonical_json_tells_different_values_apart(a: Any, b: Any) -> None:
    # Python's == says 1 == 1.0 == True; the texts JSON writes for them differ, and so may the answers.
    if json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True):
        assert canonical(a) != canonical(b)
    assert len({canonical(1), canonical(1.0), canonical(True)}) == 3


# ---------------------------------------------------------------- what is cacheable


def test_deterministic_requests_are_cacheable_on_every_endpoint() -> None:
    assert cacheable(CHAT, "openai", "chat/completions") is None
    completion = {"model": "gpt-3.5-turbo-instruct", "prompt": "hi", "temperature": 0}
    assert cacheable(completion, "openai", "completions") is None
    assert cacheable({"model": "gpt-4o-mini", "input": "hi", "temperature": 0.0}, "openai", "responses") is None
    assert cacheable(MESSAGES, "anthropic", "messages") is None


def test_embeddings_are_always_cacheable() -> None:
    assert cacheable({"model": "text-embedding-3-small", "input": "hi"}, "openai", "embeddings") is None


def test_a_seed_makes_an_openai_request_cacheable_but_not_an_anthropic_one() -> None:
    sampled = CHAT | {"temperature": 0.7, "seed": 42}
    assert cacheable(sampled, "openai", "chat/completions") is None
    assert cacheable(sampled | {"n": 3}, "openai", "chat/completions") is None, "n is in the key"
    reason = cacheable(MESSAGES | {"temperature": 0.7, "seed": 42}, "anthropic", "messages")
    assert reason is not None and "temperature" in reason


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 1},
        {"temperature": 0.2},
        {"temperature": None},
        {"temperature": False},  # not a number
        {"temperature": "0"},
        {"seed": None},
        {"seed": "42"},
        {"seed": True},
    ],
)
def test_requests_that_sample_are_not_cacheable(change: dict[str, Any]) -> None:
    body = {k: v for k, v in CHAT.items() if k != "temperature"} | change
    reason = cacheable(body, "openai", "chat/completions")
    assert reason is not None and "samples" in reason
    no_temperature = {k: v for k, v in MESSAGES.items() if k != "temperature"}
    assert cacheable(no_temperature, "anthropic", "messages") is not None, "Anthropic's default is 1"


@pytest.mark.parametrize(
    ("endpoint", "tool"),
    [
        ("responses", {"type": "web_search"}),
        ("responses", {"type": "web_search_preview"}),
        ("responses", {"type": "file_search", "vector_store_ids": ["vs_1"]}),
        ("responses", {"type": "code_interpreter", "container": {"type": "auto"}}),
        ("responses", {"type": "computer_use_preview", "display_width": 1024}),
        ("responses", {"type": "mcp", "server_label": "deepwiki", "server_url": "https://mcp.example"}),
        ("responses", {"type": "image_generation"}),
        ("chat/completions", {"type": "web_search"}),
    ],
)
def test_openai_tools_the_provider_runs_are_not_cacheable(endpoint: str, tool: dict[str, Any]) -> None:
    body = {"model": "gpt-4o-mini", "temperature": 0, "input": "news?", "tools": [FUNCTION_TOOL, tool]}
    reason = cacheable(body, "openai", endpoint)
    assert reason is not None and tool["type"] in reason


@pytest.mark.parametrize(
    "tool",
    [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3},
        {"type": "code_execution_20250522", "name": "code_execution"},
        {"type": "computer_20250124", "name": "computer", "display_width_px": 1024, "display_height_px": 768},
        {"type": "web_fetch_20250910", "name": "web_fetch"},
    ],
)
def test_anthropic_tools_the_provider_runs_are_not_cacheable(tool: dict[str, Any]) -> None:
    reason = cacheable(MESSAGES | {"tools": [tool]}, "anthropic", "messages")
    assert reason is not None and tool["type"] in reason


def test_function_tools_are_cacheable_the_model_only_proposes_calls() -> None:
    assert cacheable(CHAT | {"tools": [FUNCTION_TOOL]}, "openai", "chat/completions") is None
    responses_tool = {"type": "function", "name": "read_gauge", "parameters": {"type": "object"}}
    body = {"model": "gpt-4o-mini", "temperature": 0, "input": "rain?", "tools": [responses_tool]}
    assert cacheable(body, "openai", "responses") is None
    anthropic_tools = [{"name": "read_gauge", "input_schema": {"type": "object"}}, {"type": "custom", "name": "x"}]
    assert cacheable(MESSAGES | {"tools": anthropic_tools}, "anthropic", "messages") is None


@pytest.mark.parametrize("tools", [{"type": "function"}, ["read_gauge"]])
def test_malformed_tools_are_not_cacheable(tools: Any) -> None:
    assert cacheable(CHAT | {"tools": tools}, "openai", "chat/completions") is not None


@pytest.mark.parametrize(
    ("shape", "endpoint", "change", "words"),
    [
        ("openai", "responses", {"previous_response_id": "resp_1"}, "previous_response_id"),
        ("openai", "responses", {"conversation": "conv_1"}, "conversation"),
        ("openai", "responses", {"store": True}, "store"),
        ("openai", "chat/completions", {"store": True}, "store"),
        ("openai", "responses", {"background": True}, "background"),
        ("openai", "responses", {"prompt": {"id": "pmpt_1"}}, "stored prompt"),
        ("openai", "chat/completions", {"web_search_options": {}}, "web"),
        ("openai", "chat/completions", {"modalities": ["text", "audio"]}, "audio"),
        ("openai", "chat/completions", {"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ("anthropic", "messages", {"container": "container_1"}, "container"),
        ("anthropic", "messages", {"mcp_servers": [{"type": "url", "url": "https://mcp.example"}]}, "MCP"),
    ],
)
def test_server_state_and_audio_output_are_not_cacheable(
    shape: str, endpoint: str, change: dict[str, Any], words: str
) -> None:
    base = MESSAGES if shape == "anthropic" else CHAT
    assert cacheable(base, shape, endpoint) is None
    reason = cacheable(base | change, shape, endpoint)
    assert reason is not None and words in reason


def test_what_keeps_server_state_away_is_fine_when_absent_or_off() -> None:
    body = {"model": "gpt-4o-mini", "temperature": 0, "input": "hi"}
    for change in ({"store": False}, {"previous_response_id": None}, {"prompt": {"id": "pmpt_1", "version": "3"}}):
        assert cacheable(body | change, "openai", "responses") is None, change
    assert cacheable(body | {"modalities": ["text"]}, "openai", "chat/completions") is None


@pytest.mark.parametrize(
    ("shape", "endpoint"),
    [
        ("openai", "images/generations"),
        ("openai", "audio/speech"),
        ("anthropic", "messages/count_tokens"),
        ("gemini", "generateContent"),
        ("ollama", "api/chat"),
        (None, "files"),
        ("anthropic", "chat/completions"),
    ],
)
def test_other_endpoints_are_not_cacheable(shape: str | None, endpoint: str) -> None:
    assert cacheable(CHAT, shape, endpoint) == f"{endpoint} answers are not cached"


def test_a_body_that_is_no_object_is_not_cacheable() -> None:
    assert cacheable([CHAT], "openai", "chat/completions") == "the body is not a JSON object"
