"""`[server].cost_in_body`: OpenAI-shaped answers carry `usage.cost`, the very number in the call's record, the
official openai SDK still reads every answer, and every other byte is the provider's. Off, nothing changes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from openai.types.chat import ChatCompletionChunk

from picometer.gateway.cost_in_body import _MAX_TRIES, _USAGE_KEY, answer_with_cost, event_data_with_cost
from tests.replay import ReplayServer, sse
from tests.sdks import chat_stream_with_usage, oa
from tests.servers import Gateways, GatewayServer, SimServer, stream_post

MESSAGES: list[Any] = [{"role": "user", "content": "What did the rain gauge read this morning"}]
ON = {"cost_in_body": True}


def cost_of(usage: Any) -> Any:
    """The `cost` the SDK kept from an answer's usage (an extra field on its pydantic model)."""
    assert usage is not None and usage.model_extra is not None
    return usage.model_extra.get("cost")


def post_raw(base_url: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """One POST over a bare socket: (status, headers, the body bytes as they came, not decoded by a client)."""
    url = httpx.URL(base_url)
    content = json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", f"Host: {url.host}:{url.port}", "Connection: close"]
    head += ["Content-Type: application/json", f"Content-Length: {len(content)}"]
    data = b""
    with socket.create_connection((url.host, url.port or 80), timeout=10) as s:
        s.sendall("\r\n".join(head).encode() + b"\r\n\r\n" + content)
        while chunk := s.recv(65536):
            data += chunk
    top, _, payload = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    assert "transfer-encoding" not in headers, "a whole answer is sent with its length"
    return int(status_line.split()[1]), headers, payload


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with ReplayServer() as server:
        yield server


@pytest.fixture
def gateways(replay: ReplayServer, tmp_path: Path) -> Iterator[Gateways]:
    with Gateways(replay.url, tmp_path) as make:
        yield make


# ------------------------------------------------------------ the official SDK against the simulated provider


def text(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_chat_answer_carries_the_cost_of_its_record(make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    raw = oa(f"{gw.url}/openai").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-sim-cached": "8"}
    )
    completion = raw.parse()
    [rec] = gw.records(1)
    assert rec["status"] == "ok" and rec["cost_usd"] > 0
    assert cost_of(completion.usage) == rec["cost_usd"]
    assert float(raw.headers["x-picometer-cost-usd"]) == pytest.approx(rec["cost_usd"], rel=1e-6)
    # The rest of the answer still reads as it should.
    assert completion.usage is not None and completion.usage.prompt_tokens == rec["input_tokens"]
    assert completion.choices[0].message.content


def test_chat_stream_with_usage_ends_with_the_cost_of_its_record(sim: SimServer, make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    direct = chat_stream_with_usage(f"{sim.url}/v1", MESSAGES, {"x-sim-cached": "4"})
    chunks = chat_stream_with_usage(f"{gw.url}/openai", MESSAGES, {"x-sim-cached": "4"})
    assert text(chunks) == text(direct) and len(chunks) == len(direct)
    last = chunks[-1]
    assert last.choices == [] and all(c.usage is None for c in chunks[:-1])
    [rec] = gw.records(1)
    # Priced when the usage chunk passed, recorded at [DONE] with the same usage: one number.
    assert rec["status"] == "ok" and rec["cost_usd"] > 0
    assert cost_of(last.usage) == rec["cost_usd"]
    assert last.usage is not None and last.usage.prompt_tokens == rec["input_tokens"]
    assert cost_of(direct[-1].usage) is None, "the simulated provider sends no cost of its own"


def test_chat_stream_without_usage_request_still_hides_the_chunk(make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    body = {"model": "gpt-4o", "messages": MESSAGES}
    with stream_post(f"{gw.url}/openai/chat/completions", body) as r:
        got = r.read()
    assert r.status_code == 200 and got.rstrip().endswith(b"data: [DONE]")
    assert b'"usage"' not in got, "the client did not ask for usage and must not see picometer's"
    [rec] = gw.records(1)
    assert rec["status"] == "ok" and rec["cost_usd"] > 0


def test_legacy_completions_whole_and_streamed(make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    client = oa(f"{gw.url}/openai")
    whole = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once upon a time")
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Once upon a time",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    r1, r2 = gw.records(2)
    assert r1["cost_usd"] > 0 and cost_of(whole.usage) == r1["cost_usd"]
    assert r2["cost_usd"] > 0 and cost_of(chunks[-1].usage) == r2["cost_usd"]


def test_embeddings_carry_the_cost(make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    emb = oa(f"{gw.url}/openai").embeddings.create(model="text-embedding-3-small", input=["one", "two"])
    [rec] = gw.records(1)
    assert rec["endpoint"] == "embeddings" and rec["cost_usd"] > 0
    assert cost_of(emb.usage) == rec["cost_usd"]
    assert len(emb.data) == 2 and emb.data[0].embedding


def test_responses_carry_the_cost_whole_and_in_the_completed_event(make_gateway: Any) -> None:
    gw: GatewayServer = make_gateway(server=ON)
    client = oa(f"{gw.url}/openai")
    whole = client.responses.create(model="gpt-4o-mini", input="Is the soil dry")
    events = list(client.responses.create(model="gpt-4o-mini", input="Is the soil dry", stream=True))
    r1, r2 = gw.records(2)
    assert r1["endpoint"] == r2["endpoint"] == "responses" and r1["cost_usd"] > 0 and r2["cost_usd"] > 0
    assert cost_of(whole.usage) == r1["cost_usd"]
    assert whole.output_text
    final = events[-1]
    assert final.type == "response.completed"
    assert cost_of(final.response.usage) == r2["cost_usd"]
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == whole.output_text


def test_off_by_default_the_sdk_sees_no_cost(gateway: GatewayServer) -> None:
    client = oa(f"{gateway.url}/openai")
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    chunks = chat_stream_with_usage(f"{gateway.url}/openai", MESSAGES, {})
    assert cost_of(completion.usage) is None and cost_of(chunks[-1].usage) is None
    assert all(r["cost_usd"] > 0 for r in gateway.records(2))


# ------------------------------------------------------------ bytes, against a provider that answers set bytes

PRETTY_CHAT = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": 'Grüße: "usage": {"cost": 1}'},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150},
        "service_tier": "default",
        "system_fingerprint": "fp_1",
    },
    indent=2,
    ensure_ascii=False,
).encode()  # as OpenAI sends it: indented, UTF-8, usage not last


def chat_request(**extra: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": MESSAGES, **extra}


def test_off_the_answer_is_the_providers_to_the_byte(replay: ReplayServer, gateways: Gateways) -> None:
    gw = gateways()
    replay.answer_bytes(PRETTY_CHAT, b"application/json")
    status, headers, body = post_raw(gw.url, "/openai/chat/completions", chat_request())
    assert status == 200 and body == PRETTY_CHAT
    assert int(headers["content-length"]) == len(body)


def test_on_only_the_cost_is_added_and_the_length_follows(replay: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(server=ON)
    replay.answer_bytes(PRETTY_CHAT, b"application/json")
    status, headers, body = post_raw(gw.url, "/openai/chat/completions", chat_request())
    [rec] = gw.records(1)
    cost = rec["cost_usd"]
    assert status == 200 and cost > 0
    assert int(headers["content-length"]) == len(body)
    answer = json.loads(body)
    expected = json.loads(PRETTY_CHAT)
    expected["usage"]["cost"] = cost
    assert answer == expected, "the cost sits in the top-level usage, the content's look-alike untouched"
    assert body.replace(f', "cost": {json.dumps(cost)}'.encode(), b"") == PRETTY_CHAT
    assert float(headers["x-picometer-cost-usd"]) == pytest.approx(cost, rel=1e-6)


def test_a_big_embeddings_answer_gets_its_cost_too(replay: ReplayServer, gateways: Gateways) -> None:
    """Past a megabyte an answer is not parsed whole; its usage is found in its end."""
    gw = gateways(server=ON)
    vector = [0.0123456789] * 1536
    answer: dict[str, Any] = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": vector} for i in range(120)],
        "model": "text-embedding-3-small",
        "usage": {"prompt_tokens": 960, "total_tokens": 960},
    }
    sent = json.dumps(answer).encode()
    assert len(sent) > 2_000_000
    replay.answer_bytes(sent, b"application/json")
    status, headers, body = post_raw(
        gw.url, "/openai/embeddings", {"model": "text-embedding-3-small", "input": ["x"] * 120}
    )
    [rec] = gw.records(1)
    assert status == 200 and rec["cost_usd"] > 0 and int(headers["content-length"]) == len(body)
    assert json.loads(body) == {**answer, "usage": {**answer["usage"], "cost": rec["cost_usd"]}}
    assert body[: len(sent) - 200] == sent[: len(sent) - 200], "everything before the usage is as it came"


def test_a_providers_own_cost_is_replaced_by_the_records(replay: ReplayServer, gateways: Gateways) -> None:
    """OpenRouter sends usage.cost: the answer carries one cost, the one picometer records (here, theirs)."""
    gw = gateways(server=ON)
    usage = {"prompt_tokens": 50, "completion_tokens": 5, "total_tokens": 55, "cost": 0.00042}
    replay.answer_json({"id": "gen-1", "model": "openai/gpt-4o-mini", "choices": [], "usage": usage})
    completion = oa(f"{gw.url}/openai").chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    [rec] = gw.records(1)
    assert rec["cost_usd"] == 0.00042 and rec["price_source"] == "provider"
    assert completion.content.count(b'"cost"') == 1
    assert cost_of(completion.parse().usage) == 0.00042


def test_unpriced_errors_and_anthropic_answers_are_untouched(replay: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(server=ON, budgets={"unpriced": "allow"})
    unpriced = json.dumps({"model": "my-own-model", "choices": [], "usage": {"prompt_tokens": 9}}).encode()
    error = {"error": {"type": "invalid_request_error", "message": "no", "usage": {"x": 1}}}
    message = json.dumps(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-haiku-4-5",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "end_turn",
            "usage": {"input_tokens": 10, "output_tokens": 2},
        }
    ).encode()
    replay.answer_bytes(unpriced, b"application/json")
    status, headers, body = post_raw(gw.url, "/openai/chat/completions", {**chat_request(), "model": "my-own-model"})
    assert (status, body, headers["x-picometer-cost-usd"]) == (200, unpriced, "unknown")

    replay.answer_json(error, status=400)
    status, _, body = post_raw(gw.url, "/openai/chat/completions", chat_request())
    assert (status, body) == (400, json.dumps(error).encode())

    replay.answer_bytes(message, b"application/json")
    anthropic = {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": MESSAGES}
    status, _, body = post_raw(gw.url, "/anthropic/v1/messages", anthropic)
    assert (status, body) == (200, message)
    records = gw.records(3)
    assert [r["status"] for r in records] == ["ok", "error", "ok"]
    assert records[0]["cost_usd"] is None and records[2]["cost_usd"] > 0


def test_only_the_usage_event_of_a_stream_changes(replay: ReplayServer, gateways: Gateways) -> None:
    gw = gateways(server=ON)
    head = {"id": "c1", "object": "chat.completion.chunk", "model": "gpt-4o-mini"}
    usage = {"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22}
    usage_chunk = {**head, "choices": [], "usage": usage}
    events: list[dict[str, Any] | str] = [
        {**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
        {**head, "choices": [{"index": 0, "delta": {"content": "Dry, 2 mm"}}]},
        {**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        usage_chunk,
        "[DONE]",
    ]
    replay.answer_sse(events)
    body = chat_request(stream_options={"include_usage": True})
    with stream_post(f"{gw.url}/openai/chat/completions", body) as r:
        got = r.read()
    [rec] = gw.records(1)
    sent = sse(events).split(b"\n\n")
    came = got.split(b"\n\n")
    assert len(came) == len(sent)
    changed = [i for i, (a, b) in enumerate(zip(sent, came, strict=True)) if a != b]
    assert changed == [3]
    assert json.loads(came[3].removeprefix(b"data: ")) == {**usage_chunk, "usage": {**usage, "cost": rec["cost_usd"]}}
    assert rec["cost_usd"] > 0 and rec["status"] == "ok"


# ------------------------------------------------------------ the splice itself

_KEYS = st.sampled_from(["usage", "cost", "data", 'say "usage', '"usage": {', "\\", "ü"])
_TEXT = st.text(alphabet=st.sampled_from(list('ab"\\{}[]:, üusage\n')), max_size=12)
_SCALARS = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | _TEXT
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4), max_leaves=20
)
_COST = st.floats(min_value=0, max_value=1e4, allow_nan=False)


@given(
    before=st.dictionaries(_KEYS, _JSON, max_size=4),
    after=st.dictionaries(_KEYS, _JSON, max_size=4),
    usage=st.dictionaries(_KEYS, _JSON, max_size=4),
    indent=st.sampled_from([None, 0, 2]),
    ascii_only=st.booleans(),
    cost=_COST,
)
def test_the_cost_lands_in_the_top_level_usage_only(
    before: dict[str, Any],
    after: dict[str, Any],
    usage: dict[str, Any],
    indent: int | None,
    ascii_only: bool,
    cost: float,
) -> None:
    answer = {**{k: v for k, v in before.items() if k != "usage"}, "usage": usage}
    answer.update({k: v for k, v in after.items() if k not in answer})
    data = json.dumps(answer, indent=indent, ensure_ascii=ascii_only).encode()
    assume(len(_USAGE_KEY.findall(data)) <= _MAX_TRIES)  # past the bound: left alone (the test below)
    out = answer_with_cost(data, cost)
    assert out is not None
    assert json.loads(out) == {**answer, "usage": {**usage, "cost": cost}}
    if "cost" not in usage:  # added, every other byte kept
        added = (b", " if usage else b"") + b'"cost": ' + json.dumps(cost).encode()
        assert any(out[:p] + out[p + len(added) :] == data for p in range(len(data) + 1))


def test_an_answer_with_more_usage_objects_than_the_bound_after_its_own_is_left_alone() -> None:
    """Only the last _MAX_TRIES "usage" objects are tried (no API sends more): the splice's work stays bounded,
    and an answer past it goes without usage.cost (its cost header still carries it)."""
    nested: dict[str, Any] = {}
    for _ in range(_MAX_TRIES):
        nested = {"usage": nested}
    within = json.dumps({"usage": {"prompt_tokens": 3, **nested["usage"]}}).encode()
    assert answer_with_cost(within, 0.5) is not None
    past = json.dumps({"usage": {"prompt_tokens": 3, **nested}}).encode()
    assert len(_USAGE_KEY.findall(past)) == _MAX_TRIES + 1 and answer_with_cost(past, 0.5) is None


@given(answer=st.dictionaries(_KEYS, _JSON, max_size=5), cost=_COST)
def test_an_answer_without_its_own_usage_is_left_alone(answer: dict[str, Any], cost: float) -> None:
    answer.pop("usage", None)
    assert answer_with_cost(json.dumps(answer).encode(), cost) is None
    assert event_data_with_cost(json.dumps(answer), ("usage",), cost) is None
