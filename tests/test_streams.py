"""A stream is judged by its terminal event: real SDKs that stop reading at it, providers that end the body
0, 20 or 100 ms later, clients that leave early and providers that never send it."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.oracle import independent_cost
from tests.sdks import ant, chat_stream_with_usage, oa
from tests.servers import GatewayServer, SimServer, stream_post

MESSAGES = [{"role": "user", "content": "How warm is the greenhouse tonight"}]
TAILS = [0, 20, 100]


def tail(ms: int) -> dict[str, str]:
    return {"x-sim-tail-ms": str(ms), "x-sim-cached": "4"}


def assert_ok_with(rec: dict[str, Any], model: str, provider: str, inp: int, out: int, cached: int) -> None:
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("ok", None, 200), rec
    assert rec["stream"] is True and rec["usage_source"] == "provider"
    assert (rec["input_tokens"], rec["output_tokens"], rec["cached_input_tokens"]) == (inp, out, cached)
    expected = independent_cost(model, provider, {"input": inp, "cached": cached, "output": out})
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("ms", TAILS)
def test_openai_chat_stream_read_to_done_is_ok(sim: SimServer, gateway: GatewayServer, ms: int) -> None:
    usage = chat_stream_with_usage(f"{sim.url}/v1", MESSAGES, tail(0))[-1].usage
    assert usage is not None
    chunks = list(
        oa(f"{gateway.url}/openai").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, extra_headers=tail(ms)
        )
    )
    assert chunks and all(c.usage is None for c in chunks)
    [rec] = gateway.records(1)
    assert_ok_with(rec, "gpt-4o-mini", "openai", usage.prompt_tokens, usage.completion_tokens, 4)


@pytest.mark.parametrize("ms", TAILS)
def test_openai_responses_stream_is_ok(gateway: GatewayServer, ms: int) -> None:
    events = list(
        oa(f"{gateway.url}/openai").responses.create(
            model="gpt-4o-mini", input="Is the soil dry", stream=True, extra_headers=tail(ms)
        )
    )
    final = events[-1]
    assert final.type == "response.completed" and final.response.usage is not None
    u = final.response.usage
    [rec] = gateway.records(1)
    assert rec["endpoint"] == "responses"
    assert_ok_with(rec, "gpt-4o-mini", "openai", u.input_tokens, u.output_tokens, 4)


@pytest.mark.parametrize("ms", TAILS)
def test_anthropic_messages_stream_iterated_is_ok(gateway: GatewayServer, ms: int) -> None:
    stream = ant(f"{gateway.url}/anthropic").messages.create(
        model="claude-haiku-4-5", max_tokens=100, messages=MESSAGES, stream=True, extra_headers=tail(ms)
    )
    events = list(stream)
    assert events[-1].type == "message_stop"
    start = next(e for e in events if e.type == "message_start")
    delta = [e for e in events if e.type == "message_delta"][-1]
    inp = start.message.usage.input_tokens + 4
    [rec] = gateway.records(1)
    assert_ok_with(rec, "claude-haiku-4-5", "anthropic", inp, delta.usage.output_tokens, 4)


@pytest.mark.parametrize("ms", TAILS)
def test_anthropic_messages_stream_helper_is_ok(gateway: GatewayServer, ms: int) -> None:
    with ant(f"{gateway.url}/anthropic").messages.stream(
        model="claude-sonnet-4-6", max_tokens=100, messages=MESSAGES, extra_headers=tail(ms)
    ) as s:
        final = s.get_final_message()
    [rec] = gateway.records(1)
    u = final.usage
    assert_ok_with(rec, "claude-sonnet-4-6", "anthropic", u.input_tokens + 4, u.output_tokens, 4)


@pytest.mark.parametrize("ms", TAILS)
def test_raw_httpx_stream_is_ok(gateway: GatewayServer, ms: int) -> None:
    body = {"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    with stream_post(f"{gateway.url}/openai/chat/completions", body, tail(ms)) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    usage = json.loads(lines[-2][6:])["usage"]
    [rec] = gateway.records(1)
    assert_ok_with(rec, "gpt-4o-mini", "openai", usage["prompt_tokens"], usage["completion_tokens"], 4)


@pytest.mark.parametrize(
    ("path", "body", "last"),
    [
        ("openai/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES}, b"data: [DONE]"),
        ("openai/responses", {"model": "gpt-4o-mini", "input": "Is the soil dry"}, b"event: response.completed"),
        (
            "anthropic/v1/messages",
            {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": MESSAGES},
            b"event: message_stop",
        ),
    ],
)
def test_the_clients_stream_ends_at_the_terminal_event_though_the_provider_keeps_its_body_open(
    gateway: GatewayServer, path: str, body: dict[str, Any], last: bytes
) -> None:
    # The provider closes its body 3 s after the terminal event; a client reading to the end of the body (curl,
    # raw httpx) has it at the terminal event, well within a 1 s read timeout.
    with stream_post(f"{gateway.url}/{path}", body, tail(3000), timeout=1.0) as r:
        got = r.read()
    assert r.status_code == 200 and got.endswith(b"\n\n") and got.strip().split(b"\n\n")[-1].startswith(last)
    [rec] = gateway.records(1)
    assert (rec["status"], rec["error_type"], rec["stream"]) == ("ok", None, True)
    assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0 and rec["cost_usd"] > 0
    # the provider's counts (the 4 cached tokens it was asked to report among them), priced as they bill
    assert_ok_with(rec, body["model"], path.split("/")[0], rec["input_tokens"], rec["output_tokens"], 4)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("openai/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES}),
        ("anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": MESSAGES}),
    ],
)
def test_a_client_that_leaves_before_the_terminal_event_is_client_disconnected(
    gateway: GatewayServer, path: str, body: dict[str, Any]
) -> None:
    # the provider stalls half way: the client reads what came and hangs up
    with stream_post(f"{gateway.url}/{path}", body, {"x-sim-fault": "stall"}) as r:
        assert r.status_code == 200
        next(r.iter_bytes())
    [rec] = gateway.records(1)
    assert (rec["status"], rec["error_type"]) == ("error", "client_disconnected")
    assert rec["usage_source"] in ("provider", "estimated") and rec["input_tokens"] > 0


@pytest.mark.parametrize(
    ("path", "body", "source"),
    [
        ("openai/chat/completions", {"model": "gpt-4o-mini", "messages": MESSAGES}, "provider"),
        ("openai/responses", {"model": "gpt-4o-mini", "input": "Is the soil dry"}, "estimated"),
        ("anthropic/v1/messages", {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": MESSAGES}, "provider"),
    ],
)
def test_a_stream_that_ends_without_its_terminal_event_is_truncated(
    gateway: GatewayServer, path: str, body: dict[str, Any], source: str
) -> None:
    r = httpx.post(
        f"{gateway.url}/{path}", json={**body, "stream": True}, headers={"x-sim-fault": "no-terminal"}, trust_env=False
    )
    assert r.status_code == 200
    [rec] = gateway.records(1)
    assert (rec["status"], rec["error_type"]) == ("error", "stream_truncated")
    # usage sent before the missing event is the provider's; none at all is estimated, never zero
    assert rec["usage_source"] == source and rec["input_tokens"] > 0 and rec["output_tokens"] > 0
    assert rec["cost_usd"] > 0


def test_sdk_streams_on_a_healthy_provider_raise_no_error_alerts(sim: SimServer, make_gateway: Any) -> None:
    gw = make_gateway(workflows={"garden": {"slo_target": 0.99}})
    client = oa(f"{gw.url}/openai")
    for _ in range(8):
        list(
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=MESSAGES,
                stream=True,
                extra_headers={"x-picometer-workflow": "garden", **tail(20)},
            )
        )
    records = gw.records(8)
    assert [r["status"] for r in records] == ["ok"] * 8
    gw.daemon.watch()
    kinds = {str(a.kind) for a in gw.daemon.alerts}
    assert not kinds & {"slo_burn_fast", "slo_burn_slow", "error_rate"}, kinds


@pytest.mark.parametrize(
    "options",
    [None, "null", '{"include_usage": false}', '{"include_obfuscation": false}'],
    ids=["absent", "null", "usage-false", "other-option"],
)
def test_picometer_asks_for_the_usage_whatever_the_client_sent(gateway: GatewayServer, options: str | None) -> None:
    # A body written by hand: key order and spacing as a client might send them; no stream_options, or its own.
    extra = "" if options is None else f', "stream_options": {options}'
    body = '{\n  "model": "gpt-4o-mini",\n  "stream": true,\n  "messages": [{"role": "user", "content": "hi"}]' + extra
    r = httpx.post(
        f"{gateway.url}/openai/chat/completions",
        content=(body + "\n}").encode(),
        headers={"content-type": "application/json"},
        trust_env=False,
    )
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    assert '"usage": {' not in r.text, "the usage chunk picometer asked for is not the client's"
    (record,) = gateway.records(1)
    assert (record["status"], record["usage_source"]) == ("ok", "provider") and record["output_tokens"] > 0


def test_the_usage_ask_is_written_into_the_clients_bytes() -> None:
    from picometer.gateway.body import written_again

    content = b'  {"model":"m","stream":true,"messages":[]}'
    body = {**json.loads(content), "stream_options": {"include_usage": True}}
    out = written_again(body, content, usage_asked_only=True)
    assert out == b'  {"stream_options":{"include_usage":true},"model":"m","stream":true,"messages":[]}'
    assert json.loads(out) == body
    bom = b"\xef\xbb\xbf" + content.strip()
    assert json.loads(written_again(body, bom, usage_asked_only=True)) == body, "a BOM: written again whole"
    assert json.loads(written_again(body, content, usage_asked_only=False)) == body
