"""The official SDKs through picometer against a loopback provider: same content, right tokens, right cost."""

from __future__ import annotations

import json

import pytest

from tests.oracle import independent_cost
from tests.sdks import ant, chat_stream_with_usage, oa
from tests.servers import GatewayServer, SimServer

MESSAGES = [{"role": "user", "content": "Summarise the state of the garden sensors in one line"}]


def test_openai_chat_matches_direct_and_is_priced_with_cache(sim: SimServer, gateway: GatewayServer) -> None:
    headers = {"x-sim-cached": "8", "x-picometer-workflow": "garden"}
    direct = oa(f"{sim.url}/v1").chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers)
    raw = oa(f"{gateway.url}/openai").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers=headers
    )
    via = raw.parse()
    assert via.choices[0].message.content == direct.choices[0].message.content
    assert via.usage == direct.usage
    [rec] = gateway.records(1)
    assert rec["workflow"] == "garden"
    assert rec["status"] == "ok" and rec["usage_source"] == "provider" and rec["endpoint"] == "chat/completions"
    assert rec["input_tokens"] == direct.usage.prompt_tokens
    assert rec["cached_input_tokens"] == 8
    assert rec["output_tokens"] == direct.usage.completion_tokens
    expected = independent_cost(
        "gpt-4o-mini", "openai", {"input": rec["input_tokens"], "cached": 8, "output": rec["output_tokens"]}
    )
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)
    assert rec["price_source"] == "genai-prices:openai/gpt-4o-mini"
    assert float(raw.headers["x-picometer-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    assert raw.headers["x-picometer-request-id"] == rec["request_id"]


def test_openai_stream_without_usage_request_hides_the_added_chunk(sim: SimServer, gateway: GatewayServer) -> None:
    direct = list(oa(f"{sim.url}/v1").chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    via = list(oa(f"{gateway.url}/openai").chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    text = lambda chunks: "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)  # noqa: E731
    assert text(via) == text(direct)
    assert len(via) == len(direct)
    assert all(c.usage is None for c in via), "the client did not ask for usage and must not see it"
    [rec] = gateway.records(1)
    assert rec["stream"] is True and rec["usage_source"] == "provider"
    assert rec["status"] == "ok" and rec["error_type"] is None
    assert rec["output_tokens"] > 0 and rec["input_tokens"] > 0
    # the upstream saw the include_usage we added
    assert json.loads(sim.sim.seen[-1].body)["stream_options"] == {"include_usage": True}


def test_openai_stream_with_usage_request_keeps_the_chunk(sim: SimServer, gateway: GatewayServer) -> None:
    chunks = chat_stream_with_usage(f"{gateway.url}/openai", MESSAGES, {"x-sim-cached": "4"})
    usage = chunks[-1].usage
    assert usage is not None
    [rec] = gateway.records(1)
    assert rec["status"] == "ok" and rec["error_type"] is None and rec["usage_source"] == "provider"
    assert (rec["input_tokens"], rec["output_tokens"], rec["cached_input_tokens"]) == (
        usage.prompt_tokens,
        usage.completion_tokens,
        4,
    )
    assert rec["ttft_ms"] is not None and rec["ttft_ms"] <= rec["latency_ms"]


def test_openai_responses_stream_and_not(gateway: GatewayServer) -> None:
    client = oa(f"{gateway.url}/openai")
    whole = client.responses.create(
        model="gpt-4o-mini", input="Say something about tomatoes", extra_headers={"x-sim-reasoning": "5"}
    )
    events = list(client.responses.create(model="gpt-4o-mini", input="Say something about tomatoes", stream=True))
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == whole.output_text
    r1, r2 = gateway.records(2)
    assert r1["status"] == r2["status"] == "ok" and r1["error_type"] is r2["error_type"] is None
    assert r1["endpoint"] == r2["endpoint"] == "responses"
    assert r1["input_tokens"] == whole.usage.input_tokens and r1["output_tokens"] == whole.usage.output_tokens
    assert r1["reasoning_tokens"] == 5
    assert r2["usage_source"] == "provider" and r2["output_tokens"] == r1["output_tokens"] - 5


def test_openai_embeddings_and_legacy_completions(gateway: GatewayServer) -> None:
    client = oa(f"{gateway.url}/openai")
    emb = client.embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    comp = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    r1, r2 = gateway.records(2)
    assert r1["status"] == r2["status"] == "ok"
    assert r1["endpoint"] == "embeddings" and r1["input_tokens"] == emb.usage.prompt_tokens and r1["output_tokens"] == 0
    assert r1["cost_usd"] == pytest.approx(
        independent_cost("text-embedding-3-small", "openai", {"input": r1["input_tokens"], "output": 0})
    )
    assert r2["endpoint"] == "completions" and r2["output_tokens"] == comp.usage.completion_tokens


def test_anthropic_messages_match_direct_with_cache_reads_and_writes(sim: SimServer, gateway: GatewayServer) -> None:
    headers = {"x-sim-cached": "6", "x-sim-cache-write": "3"}
    kwargs = dict(model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES, extra_headers=headers)
    direct = ant(sim.url).messages.create(**kwargs)  # type: ignore[call-overload]
    via = ant(f"{gateway.url}/anthropic").messages.create(**kwargs)  # type: ignore[call-overload]
    assert via.content[0].text == direct.content[0].text
    [rec] = gateway.records(1)
    assert rec["status"] == "ok" and rec["usage_source"] == "provider"
    u = direct.usage
    # ours includes cache reads and writes in input_tokens; Anthropic's does not
    assert rec["input_tokens"] == u.input_tokens + 6 + 3
    assert (rec["cached_input_tokens"], rec["cache_write_tokens"], rec["output_tokens"]) == (
        6,
        3,
        u.output_tokens,
    )
    expected = independent_cost(
        "claude-sonnet-4-6",
        "anthropic",
        {"input": rec["input_tokens"], "cached": 6, "write": 3, "output": u.output_tokens},
    )
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)


def test_anthropic_stream_takes_the_last_cumulative_delta(sim: SimServer, gateway: GatewayServer) -> None:
    kwargs = dict(model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, extra_headers={"x-sim-cached": "5"})
    with ant(sim.url).messages.stream(**kwargs) as s:  # type: ignore[arg-type]
        direct_text = s.get_final_text()
    with ant(f"{gateway.url}/anthropic").messages.stream(**kwargs) as s:  # type: ignore[arg-type]
        via_text = s.get_final_text()
        final = s.get_final_message()
    assert via_text == direct_text
    [rec] = gateway.records(1)
    assert rec["stream"] is True and rec["usage_source"] == "provider"
    assert rec["status"] == "ok" and rec["error_type"] is None
    assert rec["output_tokens"] == final.usage.output_tokens
    assert rec["input_tokens"] == final.usage.input_tokens + 5 and rec["cached_input_tokens"] == 5
    expected = independent_cost(
        "claude-haiku-4-5",
        "anthropic",
        {"input": rec["input_tokens"], "cached": 5, "output": rec["output_tokens"]},
    )
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)
