"""Translation between the OpenAI chat and Anthropic messages APIs: each mapping, each refusal, round trips, and
answers the real SDKs parse. (Streams: tests/test_translate_streams.py.)"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message
from hypothesis import given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

from picometer.translate import DEFAULT_MAX_TOKENS, Untranslatable, answer, error, request
from tests.replay import ReplayServer
from tests.sdks import ant, oa

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather at a place",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLAUDE_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather at a place",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def to_claude(body: dict[str, Any]) -> dict[str, Any]:
    return request({"model": "gpt-4o", **body}, "openai", "anthropic", "claude-haiku-4-5")


def to_gpt(body: dict[str, Any]) -> dict[str, Any]:
    return request({"model": "claude-sonnet-4-5", "max_tokens": 512, **body}, "anthropic", "openai", "gpt-4o-mini")


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


HI = [user("hi")]


# --- OpenAI request -> Anthropic request ---------------------------------------------------------------------


def test_openai_request_keeps_the_conversation_and_sets_the_new_model() -> None:
    out = to_claude(
        {
            "messages": [
                {"role": "developer", "content": "Answer in French."},
                user([{"type": "text", "text": "What is on this picture?"}]),
                {"role": "assistant", "content": "Un chat.", "refusal": None, "annotations": []},
                user("And the colour?"),
            ]
        }
    )
    assert out["model"] == "claude-haiku-4-5"
    assert out["system"] == "Answer in French."
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What is on this picture?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Un chat."}]},
        {"role": "user", "content": [{"type": "text", "text": "And the colour?"}]},
    ]


def test_several_leading_system_messages_become_system_blocks() -> None:
    sys1, sys2 = (
        {"role": "system", "content": "One."},
        {"role": "developer", "content": [{"type": "text", "text": "Two."}]},
    )
    out = to_claude({"messages": [sys1, sys2, *HI]})
    assert out["system"] == [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}]


def test_a_system_message_after_the_first_turn_is_refused() -> None:
    with pytest.raises(Untranslatable, match="system message after the conversation began"):
        to_claude({"messages": [*HI, {"role": "system", "content": "Now be rude."}]})


def test_images_cross_as_base64_or_url_sources() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    out = to_claude({"messages": [user(parts)]})
    assert out["messages"][0]["content"] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    back = request(out, "anthropic", "openai", "gpt-4o")["messages"][0]["content"]
    assert [p["image_url"]["url"] for p in back] == [f"data:image/png;base64,{PNG}", "https://example.com/cat.jpg"]


@pytest.mark.parametrize(
    ("url", "why"),
    [("data:image/bmp;base64,Qk0=", "image/bmp image"), ("ftp://example.com/a.png", "neither http(s) nor base64")],
)
def test_images_anthropic_cannot_load_are_refused(url: str, why: str) -> None:
    with pytest.raises(Untranslatable, match=re.escape(why)):
        to_claude({"messages": [user([{"type": "image_url", "image_url": {"url": url}}])]})


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
    ],
)
def test_tools_and_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    out = to_claude({"messages": HI, "tools": [WEATHER_TOOL], "tool_choice": choice})
    assert out["tools"] == [CLAUDE_WEATHER_TOOL]
    assert out["tool_choice"] == expected
    back = request(out, "anthropic", "openai", "gpt-4o")
    assert back["tools"] == [WEATHER_TOOL]
    assert back["tool_choice"] == choice


def test_parallel_tool_calls_off_becomes_disable_parallel_tool_use_and_back() -> None:
    out = to_claude({"messages": HI, "tools": [WEATHER_TOOL], "parallel_tool_calls": False})
    assert out["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert request(out, "anthropic", "openai", "gpt-4o")["parallel_tool_calls"] is False
    assert "tool_choice" not in to_claude({"messages": HI, "tools": [WEATHER_TOOL], "parallel_tool_calls": True})


def test_a_tool_without_parameters_gets_an_empty_object_schema_and_strict_crosses() -> None:
    tool = {"type": "function", "function": {"name": "now", "strict": True}}
    out = to_claude({"messages": HI, "tools": [tool]})
    assert out["tools"] == [{"name": "now", "input_schema": {"type": "object", "properties": {}}, "strict": True}]


def test_tool_calls_and_results_cross_and_consecutive_results_merge_into_one_user_turn() -> None:
    calls = [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": ""}},
    ]
    messages = [
        user("Weather in Oslo and here?"),
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "content": "4 °C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "12 °C"}]},
        user("Thanks."),
    ]
    out = to_claude({"messages": messages, "tools": [WEATHER_TOOL]})["messages"]
    assert [m["role"] for m in out] == ["user", "assistant", "user"]
    assert out[1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert out[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "4 °C"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12 °C"}]},
        {"type": "text", "text": "Thanks."},
    ]


def test_tool_call_arguments_that_are_not_a_json_object_are_refused() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[1, 2"}}
    with pytest.raises(Untranslatable, match="not a JSON object"):
        to_claude({"messages": [*HI, {"role": "assistant", "content": None, "tool_calls": [call]}]})


@pytest.mark.parametrize(
    ("given", "max_tokens"),
    [({}, DEFAULT_MAX_TOKENS), ({"max_tokens": 300}, 300), ({"max_completion_tokens": 700, "max_tokens": 300}, 700)],
)
def test_max_tokens_is_always_set(given: dict[str, Any], max_tokens: int) -> None:
    assert to_claude({"messages": HI, **given})["max_tokens"] == max_tokens


def test_sampling_stop_stream_and_user() -> None:
    out = to_claude(
        {
            "messages": HI,
            "temperature": 1.6,
            "top_p": 1,
            "stop": "###",
            "stream": True,
            "stream_options": {"include_usage": True},
            "user": "greenhouse-7",
        }
    )
    assert out["temperature"] == 1.0  # clamped: Anthropic's range is 0-1
    assert "top_p" not in out  # 1 is the default, and current Anthropic models take only one of the two
    assert (out["stop_sequences"], out["stream"]) == (["###"], True)
    assert out["metadata"] == {"user_id": "greenhouse-7"}
    assert "stream_options" not in out
    assert to_claude({"messages": HI, "temperature": 0.2})["temperature"] == 0.2
    assert to_claude({"messages": HI, "temperature": 1, "top_p": 0.9})["top_p"] == 0.9
    assert "temperature" not in to_claude({"messages": HI, "temperature": 1, "top_p": 0.9})


def test_hints_are_dropped_and_defaults_accepted() -> None:
    hints = {"service_tier": "auto", "store": True, "seed": 7, "metadata": {"a": "b"}, "prompt_cache_key": "k"}
    defaults = {"n": 1, "logprobs": False, "presence_penalty": 0, "response_format": {"type": "text"}}
    out = to_claude({"messages": HI, **hints, **defaults})
    assert set(out) == {"model", "messages", "max_tokens"}


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"n": 2}, "`n`"),
        ({"logprobs": True}, "`logprobs`"),
        ({"top_logprobs": 3}, "`top_logprobs`"),
        ({"presence_penalty": 0.5}, "`presence_penalty`"),
        ({"frequency_penalty": 0.5}, "`frequency_penalty`"),
        ({"logit_bias": {"50256": -100}}, "`logit_bias`"),
        ({"response_format": {"type": "json_object"}}, "`response_format`"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}}, "response_format"),
        ({"modalities": ["text", "audio"]}, "`modalities`"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "`audio`"),
        ({"functions": [{"name": "f"}]}, "`functions`"),
        ({"reasoning_effort": "low"}, "`reasoning_effort`"),
        ({"web_search_options": {}}, "`web_search_options`"),
        ({"stop": ["\n"]}, "whitespace-only `stop`"),
        ({"temperature": 0.2, "top_p": 0.5}, "`temperature` together with `top_p`"),
        ({"tools": [{"type": "custom", "custom": {"name": "x"}}]}, "type 'custom'"),
        ({"tools": [WEATHER_TOOL], "tool_choice": {"type": "allowed_tools", "allowed_tools": {}}}, "`tool_choice`"),
        ({"messages": [user([{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}])]}, "audio input"),
        ({"messages": [user([{"type": "file", "file": {"file_id": "file-1"}}])]}, "file part"),
        ({"messages": [{"role": "function", "name": "f", "content": "1"}]}, "role 'function'"),
    ],
)
def test_openai_features_without_a_counterpart_are_refused_by_name(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        to_claude({"messages": HI, **extra})
    assert named in str(refused.value)
    assert "cannot be translated" in str(refused.value)


# --- Anthropic request -> OpenAI request ---------------------------------------------------------------------


def test_anthropic_request_keeps_the_conversation_and_sets_the_new_model() -> None:
    system = [{"type": "text", "text": "You tend a greenhouse.", "cache_control": {"type": "ephemeral"}}]
    messages = [
        user("Check the vents."),
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "...", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "vents", "input": {"zone": "north"}},
            ],
        },
        user(
            [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "open 40%", "is_error": False},
                {"type": "text", "text": "Close them if it rains."},
            ]
        ),
    ]
    out = to_gpt({"system": system, "messages": messages, "stream": True, "metadata": {"user_id": "u-1"}})
    assert out["model"] == "gpt-4o-mini"
    assert out["max_completion_tokens"] == 512
    assert out["messages"] == [
        {"role": "system", "content": "You tend a greenhouse."},
        {"role": "user", "content": "Check the vents."},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "vents", "arguments": '{"zone": "north"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "open 40%"},
        {"role": "user", "content": "Close them if it rains."},
    ]
    assert (out["stream"], out["stream_options"], out["user"]) == (True, {"include_usage": True}, "u-1")


def test_the_token_limit_goes_where_the_target_reads_it() -> None:
    body = {"model": "claude", "max_tokens": 300, "messages": HI}
    assert request(body, "anthropic", "openai", "llama3.2", max_tokens_field="max_tokens")["max_tokens"] == 300
    assert "max_tokens" not in request(body, "anthropic", "openai", "gpt-5-mini")


def test_anthropic_sampling_and_stop_sequences() -> None:
    out = to_gpt({"messages": HI, "temperature": 0.4, "top_p": 0.8, "stop_sequences": ["END", "STOP"]})
    assert (out["temperature"], out["top_p"], out["stop"]) == (0.4, 0.8, ["END", "STOP"])
    assert "thinking" not in to_gpt({"messages": HI, "thinking": {"type": "disabled"}, "cache_control": {}})


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 2000}}, "`thinking`"),
        ({"top_k": 40}, "`top_k`"),
        ({"output_config": {"effort": "low"}}, "`output_config`"),
        ({"container": "c-1"}, "`container`"),
        ({"inference_geo": "eu"}, "`inference_geo`"),
        ({"max_tokens": 0}, "`max_tokens` = 0"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "5 `stop_sequences`"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "web_search_20250305 tool"),
        ({"tools": [{**CLAUDE_WEATHER_TOOL, "input_examples": [{"city": "Oslo"}]}]}, "input_examples"),
        ({"messages": [user([{"type": "document", "source": {"type": "text", "data": "x"}}])]}, "document block"),
        ({"messages": [user([{"type": "text", "text": "x", "citations": [{"type": "x"}]}])]}, "citations"),
        (
            {"messages": [user([{"type": "image", "source": {"type": "file", "file_id": "file_1"}}])]},
            "'file' source",
        ),
        (
            {"messages": [user([{"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}])]},
            "'image' block",
        ),
        ({"messages": [{"role": "assistant", "content": [{"type": "server_tool_use"}]}]}, "'server_tool_use' block"),
        ({"brand_new_feature": True}, "`brand_new_feature`"),
    ],
)
def test_anthropic_features_without_a_counterpart_are_refused_by_name(extra: dict[str, Any], named: str) -> None:
    with pytest.raises(Untranslatable) as refused:
        to_gpt({"messages": HI, **extra})
    assert named in str(refused.value)


def test_same_api_only_changes_the_model_and_unknown_apis_are_refused() -> None:
    body = {"model": "gpt-4o", "messages": HI, "logprobs": True}
    assert request(body, "openai", "openai", "gpt-4o-mini") == {**body, "model": "gpt-4o-mini"}
    with pytest.raises(Untranslatable, match="'gemini'"):
        request(body, "openai", "gemini", "gemini-2.5-flash")


# --- whole answers, read by the real SDK types ---------------------------------------------------------------

CLAUDE_ANSWER: dict[str, Any] = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-haiku-4-5-20251001",
    "content": [
        {"type": "text", "text": "I'll check the weather in Oslo."},
        {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": "get_weather", "input": {"city": "Oslo"}},
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 120,
        "cache_creation_input_tokens": 30,
        "cache_read_input_tokens": 2000,
        "output_tokens": 45,
        "service_tier": "standard",
    },
}
GPT_ANSWER: dict[str, Any] = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "Checking both.",
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                    },
                    {
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        }
    ],
    "usage": {
        "prompt_tokens": 1500,
        "completion_tokens": 60,
        "total_tokens": 1560,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
    "service_tier": "default",
    "system_fingerprint": "fp_06737a9306",
}


def test_an_anthropic_answer_reads_as_an_openai_chat_completion() -> None:
    out = ChatCompletion.model_validate(answer(CLAUDE_ANSWER, "anthropic", "openai", "gpt-4o", created=1764504000))
    assert (out.model, out.created, out.id) == ("gpt-4o", 1764504000, "msg_01XFDUDYJgAACzvnptvVoYEL")
    choice = out.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "I'll check the weather in Oslo."
    call = choice.message.tool_calls[0] if choice.message.tool_calls else None
    assert call is not None and call.type == "function"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_01A09q90qw90lq917835lq9",
        "get_weather",
        {"city": "Oslo"},
    )
    usage = out.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (2150, 45, 2195)
    assert (usage.prompt_tokens_details.cached_tokens, usage.prompt_tokens_details.cache_write_tokens) == (2000, 30)


def test_an_openai_answer_reads_as_an_anthropic_message() -> None:
    out = Message.model_validate(answer(GPT_ANSWER, "openai", "anthropic", "claude-sonnet-4-5"))
    assert (out.model, out.stop_reason, out.role) == ("claude-sonnet-4-5", "tool_use", "assistant")
    assert [b.type for b in out.content] == ["text", "tool_use", "tool_use"]
    assert out.content[0].type == "text" and out.content[0].text == "Checking both."
    assert [(b.id, b.input) for b in out.content if b.type == "tool_use"] == [
        ("call_a", {"city": "Oslo"}),
        ("call_b", {"city": "Rome"}),
    ]
    assert (out.usage.input_tokens, out.usage.cache_read_input_tokens, out.usage.output_tokens) == (476, 1024, 60)


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        (None, "stop"),
    ],
)
def test_stop_reasons_become_finish_reasons(stop: str | None, finish: str) -> None:
    body = {**CLAUDE_ANSWER, "content": [{"type": "text", "text": "x"}], "stop_reason": stop}
    assert (
        ChatCompletion.model_validate(answer(body, "anthropic", "openai", "gpt-4o")).choices[0].finish_reason == finish
    )


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("content_filter", "refusal")],
)
def test_finish_reasons_become_stop_reasons(finish: str, stop: str) -> None:
    choice = {**GPT_ANSWER["choices"][0], "finish_reason": finish}
    out = Message.model_validate(answer({**GPT_ANSWER, "choices": [choice]}, "openai", "anthropic", "claude"))
    assert out.stop_reason == stop


def test_an_openai_refusal_is_an_anthropic_refusal() -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    body = {**GPT_ANSWER, "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    out = Message.model_validate(answer(body, "openai", "anthropic", "claude"))
    assert out.stop_reason == "refusal"
    assert out.content[0].type == "text" and out.content[0].text == "I can't help with that."


def test_thinking_is_left_out_and_unknown_blocks_are_refused() -> None:
    thinking = {
        **CLAUDE_ANSWER,
        "content": [{"type": "thinking", "thinking": "hm", "signature": "s"}, *CLAUDE_ANSWER["content"]],
    }
    out = ChatCompletion.model_validate(answer(thinking, "anthropic", "openai", "gpt-4o"))
    assert out.choices[0].message.content == "I'll check the weather in Oslo."
    with pytest.raises(Untranslatable, match="'web_search_tool_result'"):
        answer({**CLAUDE_ANSWER, "content": [{"type": "web_search_tool_result"}]}, "anthropic", "openai", "gpt-4o")


# --- error bodies: the client's SDK raises its own error with the upstream's message ---------------------------


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


def test_an_anthropic_error_is_raised_by_the_openai_sdk(replay: ReplayServer) -> None:
    upstream = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}, "request_id": "r"}
    replay.answer_json(answer(upstream, "anthropic", "openai", "gpt-4o"), status=503)
    with pytest.raises(openai.InternalServerError) as raised:
        oa(replay.url).chat.completions.create(model="gpt-4o", messages=HI)
    assert raised.value.message.endswith("Overloaded")
    assert raised.value.code == "overloaded_error"
    assert raised.value.body == {
        "message": "Overloaded",
        "type": "server_error",
        "param": None,
        "code": "overloaded_error",
    }


def test_an_openai_quota_error_is_raised_by_the_anthropic_sdk(replay: ReplayServer) -> None:
    message = "You exceeded your current quota, please check your plan and billing details."
    upstream = {
        "error": {"message": message, "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
    }
    replay.answer_json(error(upstream, "openai", "anthropic"), status=429)
    with pytest.raises(anthropic.RateLimitError) as raised:
        ant(replay.url).messages.create(model="claude-haiku-4-5", max_tokens=10, messages=HI)
    assert message in str(raised.value)
    assert raised.value.body == {"type": "error", "error": {"type": "billing_error", "message": message}}


def test_picometer_codes_and_odd_error_bodies_keep_a_message() -> None:
    ours = {"error": {"type": "budget_exceeded", "code": "budget_exceeded", "message": "cap reached"}}
    assert error(ours, "openai", "anthropic")["error"] == {"type": "budget_exceeded", "message": "cap reached"}
    assert error({"error": "model not loaded"}, "openai", "anthropic")["error"]["message"] == "model not loaded"
    assert error([], "anthropic", "openai")["error"]["message"] == "the upstream provider answered with an error"


# --- properties ------------------------------------------------------------------------------------------------

texts = st.text(max_size=12)
ids = st.from_regex(r"call_[a-z0-9]{1,6}", fullmatch=True)
names = st.from_regex(r"[a-z_]{1,10}", fullmatch=True)
args = st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5) | st.booleans(), max_size=3)
text_parts = st.lists(st.builds(lambda t: {"type": "text", "text": t}, texts), min_size=1, max_size=3)
image_parts = st.sampled_from([f"data:image/png;base64,{PNG}", "https://example.com/a.png"]).map(
    lambda u: {"type": "image_url", "image_url": {"url": u}}
)
contents = texts | text_parts
calls = st.builds(
    lambda i, n, a: {"id": i, "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}, ids, names, args
)
users = st.builds(
    user, texts | st.lists(st.one_of(text_parts.map(lambda p: p[0]), image_parts), min_size=1, max_size=3)
)
assistants = st.builds(
    lambda c, t: {"role": "assistant", "content": c, **({"tool_calls": t} if t else {})},
    st.none() | contents,
    st.lists(calls, max_size=2),
)
tools = st.builds(lambda i, c: {"role": "tool", "tool_call_id": i, "content": c}, ids, contents)
systems = st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["system", "developer"]), contents)
conversations = st.builds(
    lambda s, rest: s + rest, st.lists(systems, max_size=2), st.lists(users | assistants | tools, max_size=8)
)


def said(messages: list[dict[str, Any]]) -> tuple[list[Any], list[Any], list[Any]]:
    """What a conversation says, per role and in order: texts and images, tool calls, tool results."""
    words: list[Any] = []
    asked: list[Any] = []
    results: list[Any] = []
    for m in messages:
        role = "system" if m["role"] == "developer" else m["role"]
        content = m.get("content")
        parts = [] if content is None else [{"type": "text", "text": content}] if isinstance(content, str) else content
        if role == "tool":
            results.append((m["tool_call_id"], [p["text"] for p in parts]))
            continue
        for p in parts:
            item = p.get("text") if p["type"] == "text" else p["image_url"]["url"]
            if role != "assistant" or item:  # an empty assistant text says nothing
                words.append((role, item))
        for c in m.get("tool_calls") or []:
            asked.append((c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])))
    return words, asked, results


@given(conversations)
def test_a_conversation_survives_the_round_trip(messages: list[dict[str, Any]]) -> None:
    there = request({"model": "gpt-4o", "messages": messages}, "openai", "anthropic", "claude")
    assert all(a["role"] != b["role"] for a, b in itertools.pairwise(there["messages"]))
    back = request(json.loads(json.dumps(there)), "anthropic", "openai", "gpt-4o")
    assert said(back["messages"]) == said(messages)


json_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts
VOCABULARY = ["messages", "role", "content", "type", "text", "tool_calls", "function", "arguments", "name", "tools",
              "tool_choice", "system", "user", "assistant", "tool", "image_url", "url", "source", "tool_use",
              "tool_result", "input", "max_tokens", "stop", "choices", "message", "delta", "index", "usage", "error",
              "id", "image", "base64", "data", "media_type", "tool_use_id", "tool_call_id",
              "stop_sequences"]  # fmt: skip
json_values = st.recursive(
    json_leaves | st.sampled_from(VOCABULARY),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(VOCABULARY) | texts, inner, max_size=5),
    max_leaves=25,
)


def mutated(base: Any) -> st.SearchStrategy[Any]:
    """`base` with one of its values (at any depth) replaced by arbitrary JSON."""

    def paths(value: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
        yield at
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
        for key, child in items:
            yield from paths(child, (*at, key))

    def put(value: Any, at: tuple[Any, ...], new: Any) -> Any:
        if not at:
            return new
        copy = dict(value) if isinstance(value, dict) else list(value)
        copy[at[0]] = put(value[at[0]], at[1:], new)
        return copy

    return st.builds(put, st.just(base), st.sampled_from(list(paths(base))), json_values)


def only_untranslatable(call: Any, *a: Any) -> None:
    with contextlib.suppress(Untranslatable):
        json.dumps(call(*a))


A_CLAUDE_REQUEST = to_claude(
    {"messages": [*HI, {"role": "assistant", "content": "x", "tool_calls": []}], "tools": [WEATHER_TOOL]}
)
A_GPT_REQUEST = {"model": "gpt-4o", "messages": [{"role": "system", "content": "s"}, *HI], "tools": [WEATHER_TOOL]}


gpt_requests = conversations.map(lambda m: {"model": "gpt-4o", "messages": m, "tools": [WEATHER_TOOL], "stop": "x"})
claude_requests = gpt_requests.map(lambda body: request(body, "openai", "anthropic", "claude"))


@given(json_values | mutated(A_GPT_REQUEST) | mutated(GPT_ANSWER) | gpt_requests.flatmap(mutated))
def test_openai_input_of_any_shape_raises_only_untranslatable(body: Any) -> None:
    only_untranslatable(request, body, "openai", "anthropic", "claude")
    only_untranslatable(answer, body, "openai", "anthropic", "claude")


@given(json_values | mutated(A_CLAUDE_REQUEST) | mutated(CLAUDE_ANSWER) | claude_requests.flatmap(mutated))
def test_anthropic_input_of_any_shape_raises_only_untranslatable(body: Any) -> None:
    only_untranslatable(request, body, "anthropic", "openai", "gpt-4o")
    only_untranslatable(answer, body, "anthropic", "openai", "gpt-4o")


blocks = st.lists(
    st.builds(lambda t: {"type": "text", "text": t}, texts)
    | st.builds(lambda i, n, a: {"type": "tool_use", "id": i, "name": n, "input": a}, ids, names, args),
    max_size=4,
)
claude_answers = st.builds(
    lambda c, s, u: {**CLAUDE_ANSWER, "content": c, "stop_reason": s, "usage": u},
    blocks,
    st.sampled_from(["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal", "pause_turn", None]),
    st.fixed_dictionaries({"input_tokens": st.integers(0, 10**6), "output_tokens": st.integers(0, 10**5)}),
)


@given(claude_answers)
def test_any_anthropic_answer_is_an_openai_completion_the_sdk_reads(body: dict[str, Any]) -> None:
    out = ChatCompletion.model_validate(answer(body, "anthropic", "openai", "gpt-4o"))
    said_text = "".join(b["text"] for b in body["content"] if b["type"] == "text")
    assert (out.choices[0].message.content or "") == said_text
    back = Message.model_validate(answer(out.model_dump(), "openai", "anthropic", "claude"))
    assert [b.input for b in back.content if b.type == "tool_use"] == [
        b["input"] for b in body["content"] if b["type"] == "tool_use"
    ]
    assert out.usage is not None and back.usage.input_tokens == out.usage.prompt_tokens == body["usage"]["input_tokens"]
