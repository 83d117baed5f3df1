"""The reservation is an upper bound: for any request and any usage the provider could bill for it,
cost(usage) <= reservation(request). Pure maths, with hypothesis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from picometer.config import ProviderConfig
from picometer.metering.fees import billed_tools, chat_search, limit_tool_uses, max_tool_uses, request_tools
from picometer.metering.pricing import Pricer
from picometer.metering.usage import Usage
from picometer.metering.worst import worst_usage

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)
PRICER = Pricer({})
OPENAI = ProviderConfig(kind="openai", base_url="https://api.openai.com/v1")
ANTHROPIC = ProviderConfig(kind="anthropic", base_url="https://api.anthropic.com")
OPENAI_MODELS = ["gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-4.1-mini", "gpt-audio", "gpt-4o-audio-preview", "o3"]
OPENAI_MODELS += ["gpt-4o-search-preview", "gpt-4o-mini-search-preview"]  # a web search on every chat call
SEARCH_OPTIONS = [{}, *({"search_context_size": size} for size in ("low", "medium", "high", "unheard-of"))]
ANTHROPIC_MODELS = ["claude-sonnet-4-5", "claude-3-5-haiku-latest", "claude-opus-4-1"]
TIERS = [None, "auto", "default", "flex", "priority"]


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, str, dict[str, Any]]:
    """(shape, endpoint, model, body) of a call that may ask for every dearer way of billing."""
    shape = draw(st.sampled_from(["openai", "anthropic"]))
    text = draw(st.text(max_size=300))
    limit = draw(st.one_of(st.none(), st.integers(1, 8192)))
    body: dict[str, Any]
    if shape == "anthropic":
        model, endpoint = draw(st.sampled_from(ANTHROPIC_MODELS)), "messages"
        cache = draw(st.sampled_from([None, {"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}]))
        system: dict[str, Any] = {"type": "text", "text": text}
        if cache:
            system["cache_control"] = cache
        body = {"model": model, "system": [system], "messages": [{"role": "user", "content": text}]}
        if limit:
            body["max_tokens"] = limit
        if draw(st.booleans()):
            tool: dict[str, Any] = {"type": "web_search_20250305", "name": "web_search"}
            uses = draw(st.one_of(st.none(), st.integers(1, 20)))
            if uses:
                tool["max_uses"] = uses
            body["tools"] = [tool]
        if draw(st.booleans()):
            body["messages"].append(
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}]}
            )
    else:
        model = draw(st.sampled_from(OPENAI_MODELS))
        endpoint = draw(st.sampled_from(["chat/completions", "responses"]))
        if endpoint == "responses":
            body = {"model": model, "input": text}
            if limit:
                body["max_output_tokens"] = limit
            if draw(st.booleans()):
                body["tools"] = [{"type": draw(st.sampled_from(["web_search", "web_search_preview", "file_search"]))}]
                calls = draw(st.one_of(st.none(), st.integers(1, 20)))
                if calls:
                    body["max_tool_calls"] = calls
        else:
            body = {"model": model, "messages": [{"role": "user", "content": text}], "n": draw(st.integers(1, 3))}
            if limit:
                body["max_completion_tokens"] = limit
            if draw(st.booleans()):
                body["web_search_options"] = draw(st.sampled_from(SEARCH_OPTIONS))
            if draw(st.booleans()):
                body["modalities"] = ["text", "audio"]
            if draw(st.booleans()):
                body["messages"].append(
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
                    }
                )
        tier = draw(st.sampled_from(TIERS))
        if tier is not None:
            body["service_tier"] = tier
    return shape, endpoint, model, body


def served_tiers(body: dict[str, Any]) -> list[str | None]:
    """The tiers a provider may bill a request at: the one asked for, or any when it asks for none or "auto"."""
    asked = body.get("service_tier")
    return [None, "default", "priority"] if asked in (None, "auto") else [asked]


@given(data=st.data(), request=requests())
def test_no_usage_consistent_with_a_request_costs_more_than_its_reservation(
    data: st.DataObject, request: tuple[str, str, str, dict[str, Any]]
) -> None:
    shape, endpoint, model, body = request
    provider = ANTHROPIC if shape == "anthropic" else OPENAI
    limit_tool_uses(shape, endpoint, body)  # what admission does under a cap
    worst = worst_usage(body, shape, endpoint, model, PRICER.context_window(provider, model))
    reserved = PRICER.worst_cost(provider, model, worst, AT, shape=shape, request_tools=request_tools(body))
    assert reserved is not None

    inp = data.draw(st.integers(0, worst.input_tokens))
    cached = data.draw(st.integers(0, inp))
    write = data.draw(st.integers(0, inp - cached))
    write_1h = data.draw(st.integers(0, write)) if worst.cache_write_1h_tokens else 0
    audio_in = data.draw(st.integers(0, inp)) if worst.audio_input_tokens else 0
    out = data.draw(st.integers(0, worst.output_tokens))
    audio_out = data.draw(st.integers(0, out)) if worst.audio_output_tokens else 0
    left = sum(n for _, n in max_tool_uses(shape, body))  # Responses' max_tool_calls bounds all tools together
    calls = []
    for name in sorted({name for name, _ in billed_tools(shape, body)}):
        n = data.draw(st.integers(0, left))
        calls.append((name, n))
        left -= n
    usage = Usage(
        input_tokens=inp,
        cached_input_tokens=cached,
        cache_write_tokens=write,
        cache_write_1h_tokens=write_1h,
        output_tokens=out,
        reasoning_tokens=data.draw(st.integers(0, out)),
        audio_input_tokens=audio_in,
        audio_output_tokens=audio_out,
        tool_calls=chat_search(tuple((n, c) for n, c in calls if c > 0), endpoint, model),  # as the record has it
        service_tier=data.draw(st.sampled_from(served_tiers(body))),
    )
    cost = PRICER.cost(provider, (model,), usage, AT, shape=shape, request_tools=request_tools(body)).cost_usd
    assert cost is not None
    assert cost <= reserved + 1e-12, (usage, worst, cost, reserved)


def test_a_continued_conversation_is_reserved_at_the_whole_context_window() -> None:
    body = {"model": "gpt-4o", "input": "and then?", "previous_response_id": "resp_1", "max_output_tokens": 10}
    worst = worst_usage(body, "openai", "responses", "gpt-4o", PRICER.context_window(OPENAI, "gpt-4o"))
    assert worst.input_tokens >= 128_000  # platform.openai.com/docs/models/gpt-4o: 128k context window


def test_billed_tools_without_a_limit_get_ours_written_in() -> None:
    anthropic_body: dict[str, Any] = {"tools": [{"type": "web_search_20250305", "name": "web_search"}]}
    assert limit_tool_uses("anthropic", "messages", anthropic_body)
    assert anthropic_body["tools"][0]["max_uses"] == 10
    responses_body: dict[str, Any] = {"tools": [{"type": "web_search"}]}
    assert limit_tool_uses("openai", "responses", responses_body)
    assert responses_body["max_tool_calls"] == 10
    mine: dict[str, Any] = {"tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]}
    assert not limit_tool_uses("anthropic", "messages", mine) and mine["tools"][0]["max_uses"] == 3


GEMINI = ProviderConfig(kind="gemini", base_url="https://generativelanguage.googleapis.com")
GEMINI_MODELS = ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-2.5-flash-lite"]


@st.composite
def gemini_requests(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """(model, body) of a Gemini call: long or short prompts, any output limit, thinking, candidates, audio."""
    model = draw(st.sampled_from(GEMINI_MODELS))
    # Long prompts cross 2.5 Pro's 200k-token tier: the dearer rates then apply to the whole call.
    text = "ab " * draw(st.sampled_from([0, 10, 1000, 70_000, 80_000]))
    parts: list[dict[str, Any]] = [{"text": text}]
    if draw(st.booleans()):
        parts.append({"inlineData": {"mimeType": "audio/wav", "data": "AAAA" * draw(st.integers(1, 500))}})
    config: dict[str, Any] = {}
    limit = draw(st.one_of(st.none(), st.integers(1, 65_536)))
    if limit:
        config["maxOutputTokens"] = limit
    budget = draw(st.one_of(st.none(), st.integers(-1, 32_768)))
    if budget is not None:
        config["thinkingConfig"] = {"thinkingBudget": budget}
    candidates = draw(st.one_of(st.none(), st.integers(1, 4)))
    if candidates:
        config["candidateCount"] = candidates
    return model, {"contents": [{"role": "user", "parts": parts}], "generationConfig": config}


@given(data=st.data(), request=gemini_requests())
def test_no_gemini_bill_consistent_with_a_request_costs_more_than_its_reservation(
    data: st.DataObject, request: tuple[str, dict[str, Any]]
) -> None:
    model, body = request
    endpoint = data.draw(st.sampled_from(["generateContent", "streamGenerateContent"]))
    worst = worst_usage(body, "gemini", endpoint, model, PRICER.context_window(GEMINI, model))
    reserved = PRICER.worst_cost(GEMINI, model, worst, AT, shape="gemini")
    assert reserved is not None
    config = body["generationConfig"]
    # What Google may bill: up to the limit per candidate, plus thinking up to its budget (dynamic: the maximum).
    budget = config.get("thinkingConfig", {}).get("thinkingBudget", -1)
    thinking = data.draw(st.integers(0, 32_768 if budget < 0 else budget))
    per_candidate = config.get("maxOutputTokens") or 4096
    out = data.draw(st.integers(0, per_candidate * config.get("candidateCount", 1))) + thinking
    inp = data.draw(st.integers(0, worst.input_tokens))
    audio_in = data.draw(st.integers(0, inp)) if worst.audio_input_tokens else 0
    usage = Usage(
        input_tokens=inp,
        cached_input_tokens=data.draw(st.integers(0, inp)),
        output_tokens=out,
        reasoning_tokens=thinking,
        audio_input_tokens=audio_in,
    )
    cost = PRICER.cost(GEMINI, (model,), usage, AT, shape="gemini").cost_usd
    assert cost is not None
    assert cost <= reserved + 1e-12, (usage, worst, cost, reserved)


def test_a_chat_searchs_context_size_comes_from_its_options_alone() -> None:
    body = {"tools": [{"type": "search_context_size:huge"}], "web_search_options": {"search_context_size": "low"}}
    assert request_tools(body) == ("search_context_size:low",), "a tool type cannot pose as the context size"
    low = PRICER.cost(OPENAI, ("gpt-4o-search-preview",), Usage(tool_calls=(("web_search", 1),)), AT,
                      request_tools=request_tools(body))  # fmt: skip
    assert low.tool_cost_usd == 0.030
    for odd in ({"search_context_size": ["high"]}, {"search_context_size": None}, "high", None):
        tools = request_tools({"web_search_options": odd})
        worst = worst_usage(
            {"web_search_options": odd, "messages": []}, "openai", "chat/completions", "gpt-4o-search-preview"
        )
        reserved = PRICER.worst_cost(OPENAI, "gpt-4o-search-preview", worst, AT, request_tools=tools)
        assert reserved is not None and reserved >= 0.035, odd
