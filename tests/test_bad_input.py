"""Bad input gets a clear error in the caller's own error shape, is never forwarded, and is still recorded."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from picometer.simulator import SimSettings
from tests.oracle import independent_cost
from tests.replay import ReplayServer
from tests.servers import GatewayServer, SimServer, gateway_config, stream_post

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello there"}]}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 50, "messages": [{"role": "user", "content": "hello there"}]}


def same_stream(a: bytes, b: bytes) -> bool:
    """Equal but for the provider's per-second "created" timestamps."""
    stamp = re.compile(rb'"created(_at)?": \d+')
    return stamp.sub(b"", a) == stamp.sub(b"", b)


def post(url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(url, timeout=10, trust_env=False, **kwargs)  # type: ignore[arg-type]


def test_body_not_json_is_refused_in_each_api_shape(sim: SimServer, gateway: GatewayServer) -> None:
    before = sim.sim.requests
    r1 = post(
        f"{gateway.url}/openai/chat/completions", content=b"{not json", headers={"content-type": "application/json"}
    )
    r2 = post(f"{gateway.url}/anthropic/v1/messages", content=b"[1, 2", headers={"anthropic-version": "2023-06-01"})
    assert r1.status_code == 400 and r1.json()["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in r1.json()["error"]["message"]
    assert r2.status_code == 400 and r2.json()["type"] == "error"
    assert r2.json()["error"]["type"] == "invalid_request_error"
    assert sim.sim.requests == before, "a refused request must never reach the provider"
    records = gateway.records(2)
    assert [r["status"] for r in records] == ["blocked", "blocked"]
    assert records[0]["request_id"] == r1.headers["x-picometer-request-id"]


def test_json_that_is_not_an_object_and_non_utf8_bytes(gateway: GatewayServer) -> None:
    r1 = post(f"{gateway.url}/openai/chat/completions", content=b'["a list"]')
    r2 = post(f"{gateway.url}/openai/chat/completions", content=b'{"model": "gpt-4o-mini\xff\xfe"}')
    assert r1.status_code == 400 and "JSON object" in r1.json()["error"]["message"]
    assert r2.status_code == 400 and "UTF-8" in r2.json()["error"]["message"]
    assert len(gateway.records(2)) == 2


def test_body_over_the_limit_is_413(make_gateway: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = make_gateway(server={"listen": "127.0.0.1:0", "max_body_bytes": 2048})
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
    r = post(f"{gw.url}/openai/chat/completions", json=big)
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]["message"]
    # a body sent without Content-Length (chunked) is cut off at the limit too
    r2 = post(f"{gw.url}/openai/chat/completions", content=iter([b"x" * 1500, b"y" * 1500]))
    assert r2.status_code == 413
    assert sim.sim.requests == 0


def test_unknown_provider_and_unknown_route(gateway: GatewayServer) -> None:
    r = post(f"{gateway.url}/mistral/chat/completions", json=CHAT)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_provider"
    assert "openai" in r.json()["error"]["message"]
    r2 = httpx.get(f"{gateway.url}/", trust_env=False)
    assert r2.status_code == 404
    r3 = post(f"{gateway.url}/w/only-a-workflow", json=CHAT)
    assert r3.status_code == 404
    records = gateway.records(3)
    assert records[0]["error_type"] == "unknown_provider" and records[0]["provider"] == "mistral"


def test_model_missing_or_not_a_string(gateway: GatewayServer) -> None:
    r = post(f"{gateway.url}/openai/chat/completions", json={"messages": CHAT["messages"]})
    assert r.status_code == 400 and "model" in r.json()["error"]["message"]
    r2 = post(f"{gateway.url}/anthropic/v1/messages", json={**MSG, "model": 42})
    assert r2.status_code == 400 and r2.json()["error"]["type"] == "invalid_request_error"


def test_emoji_and_non_ascii_workflow_names(gateway: GatewayServer) -> None:
    r1 = post(f"{gateway.url}/w/%F0%9F%8C%B1-caf%C3%A9/openai/chat/completions", json=CHAT)
    r2 = post(
        f"{gateway.url}/openai/chat/completions",
        json=CHAT,
        headers=[(b"x-picometer-workflow", "Grüße 🚀".encode()), (b"x-picometer-tenant", "東京".encode())],
    )
    assert r1.status_code == r2.status_code == 200
    a, b = gateway.records(2)
    assert a["workflow"] == "🌱-café"
    assert b["workflow"] == "Grüße 🚀" and b["tenant"] == "東京"
    raw = gateway.daemon.usage_log.path.read_bytes()
    assert "🌱-café".encode() in raw, "the log keeps names as readable UTF-8"


@pytest.mark.parametrize(
    "content",
    [b'"caf\\u00e9 \\ud800"', '"café \\ud800"'.encode()],
    ids=["ascii-with-escapes", "utf8-with-a-lone-surrogate-escape"],
)
def test_a_body_picometer_writes_again_keeps_any_text(gateway: GatewayServer, content: bytes) -> None:
    # A stream: picometer adds stream_options to the body, so it writes the body again.
    body = b'{"model": "gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": ' + content + b"}]}"
    r = httpx.post(
        f"{gateway.url}/openai/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
        trust_env=False,
    )
    assert r.status_code == 200 and r.text.endswith("data: [DONE]\n\n")
    (record,) = gateway.records(1)
    assert record["status"] == "ok" and record["input_tokens"] > 0


def test_control_characters_in_tags_are_removed(gateway: GatewayServer) -> None:
    post(f"{gateway.url}/openai/chat/completions", json=CHAT, headers={"x-picometer-workflow": "evil\tline"})
    # in a path a control character is refused outright: the path is not in canonical form
    r = post(f"{gateway.url}/w/evil%0Aline/openai/chat/completions", json=CHAT)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"
    tagged, refused = gateway.records(2)
    assert tagged["workflow"] == "evilline"
    assert refused["status"] == "blocked" and refused["error_type"] == "invalid_path"


@pytest.mark.parametrize("chunk_bytes", [1, 3, 7, 64])
@pytest.mark.parametrize(("path", "body"), [("openai/chat/completions", CHAT), ("anthropic/v1/messages", MSG)])
def test_sse_split_at_arbitrary_byte_boundaries(
    gateway: GatewayServer, chunk_bytes: int, path: str, body: dict[str, Any]
) -> None:
    url = f"{gateway.url}/{path}"
    whole = post(url, json={**body, "stream": True})
    split = post(url, json={**body, "stream": True}, headers={"x-sim-chunk-bytes": str(chunk_bytes)})
    assert same_stream(split.content, whole.content)
    if path.startswith("openai"):
        assert b'"usage"' not in split.content, "the usage chunk picometer asked for stays hidden"
    records = gateway.records(2)
    assert records[0]["output_tokens"] == records[1]["output_tokens"] > 0
    assert all(r["usage_source"] == "provider" for r in records)


@pytest.mark.parametrize("fault", ["html", "truncated"])
def test_upstream_garbage_is_a_clear_502(gateway: GatewayServer, fault: str) -> None:
    r = post(f"{gateway.url}/openai/chat/completions", json=CHAT, headers={"x-sim-fault": fault})
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "upstream_bad_response" and "not JSON" in err["message"] and "base_url" in err["message"]
    [rec] = gateway.records(1)
    assert rec["status"] == "error" and rec["error_type"] == "bad_response" and rec["attempts"] == 1
    assert rec["usage_source"] == "estimated" and rec["input_tokens"] > 0, "the provider may have billed: estimate"


def test_upstream_errors_are_relayed_unchanged(gateway: GatewayServer) -> None:
    r = post(f"{gateway.url}/openai/chat/completions", json=CHAT, headers={"x-sim-fault": "http429"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["message"] == "simulated 429"
    [rec] = gateway.records(1)
    assert rec["status"] == "error" and rec["error_type"] == "rate_limited" and rec["http_status"] == 429
    assert rec["cost_usd"] == 0.0 and rec["usage_source"] == "none"


def test_stream_without_any_usage_is_estimated(gateway: GatewayServer) -> None:
    r = post(f"{gateway.url}/anthropic/v1/messages", json={**MSG, "stream": True}, headers={"x-sim-fault": "no-usage"})
    assert r.status_code == 200
    [rec] = gateway.records(1)
    assert rec["status"] == "ok" and rec["usage_source"] == "estimated"
    assert rec["input_tokens"] > 0 and rec["output_tokens"] > 0 and rec["cost_usd"] > 0


def test_client_disconnect_mid_stream_is_recorded_and_the_upstream_call_cancelled(tmp_path: Path) -> None:
    with SimServer(SimSettings(chunk_delay_s=0.2)) as slow, GatewayServer(gateway_config(slow.url, tmp_path)) as gw:
        with stream_post(f"{gw.url}/anthropic/v1/messages", MSG, timeout=10) as r:
            first = next(r.iter_bytes())
            assert first
        [rec] = gw.records(1)
        assert rec["status"] == "error" and rec["error_type"] == "client_disconnected"
        assert rec["usage_source"] == "provider", "message_start already told the input tokens"
        assert rec["latency_ms"] < 2000, "picometer stopped at once instead of reading the rest"
        deadline = time.monotonic() + 2  # the record is written first; the call's slot is freed just after
        while gw.daemon.gateway.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gw.daemon.gateway.in_flight == 0


def test_unpriced_model_blocked_with_instructions_or_allowed_with_null_cost(
    make_gateway: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = make_gateway()
    r = post(f"{gw.url}/openai/chat/completions", json={**CHAT, "model": "my-finetune-xyz"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "unpriced_model"
    assert '[prices."my-finetune-xyz"]' in r.json()["error"]["message"]
    assert sim.sim.requests == 0
    allow = make_gateway(budgets={"unpriced": "allow"})
    r2 = post(f"{allow.url}/openai/chat/completions", json={**CHAT, "model": "my-finetune-xyz"})
    assert r2.status_code == 200 and r2.headers["x-picometer-cost-usd"] == "unknown"
    [rec] = allow.records(1)
    assert rec["cost_usd"] is None and rec["price_source"] == "unpriced" and rec["output_tokens"] > 0
    post(f"{allow.url}/openai/chat/completions", json={**CHAT, "model": "my-finetune-xyz"})
    alerts = [a for a in allow.daemon.alerts if a.kind == "unpriced_model"]
    assert len(alerts) == 1, "one alert per model, not per call"
    assert "'my-finetune-xyz'" in alerts[0].message and '[prices."my-finetune-xyz"]' in alerts[0].message


def test_price_override_and_free_provider(make_gateway: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = make_gateway(
        prices={"my-finetune-xyz": {"input": 2.0, "output": 8.0, "cached_input": 0.5}},
        providers={
            "openai": {"kind": "openai", "base_url": f"{sim.url}/v1"},
            "ollama": {"kind": "openai", "base_url": f"{sim.url}/v1", "free": True},
        },
    )
    post(f"{gw.url}/openai/chat/completions", json={**CHAT, "model": "my-finetune-xyz"}, headers={"x-sim-cached": "2"})
    post(f"{gw.url}/ollama/chat/completions", json={**CHAT, "model": "llama3.2"})
    a, b = gw.records(2)
    expected = ((a["input_tokens"] - 2) * 2.0 + 2 * 0.5 + a["output_tokens"] * 8.0) / 1e6
    assert a["cost_usd"] == pytest.approx(expected) and a["price_source"] == "config"
    assert b["cost_usd"] == 0.0 and b["price_source"] == "free" and b["output_tokens"] > 0


def test_unmetered_routes_are_forwarded_and_logged_with_zero_usage(gateway: GatewayServer) -> None:
    r = httpx.get(f"{gateway.url}/openai/models", trust_env=False)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "sim-1"
    c = post(f"{gateway.url}/anthropic/v1/messages/count_tokens", json=MSG)
    assert c.status_code == 200 and c.json()["input_tokens"] > 0
    a, b = gateway.records(2)
    assert a["endpoint"] == "models" and a["usage_source"] == "none" and a["status"] == "ok"
    assert b["endpoint"] == "messages/count_tokens" and b["cost_usd"] == 0.0 and b["model"] == MSG["model"]
    assert json.loads(gateway.daemon.usage_log.path.read_text().splitlines()[0])["request_id"]


def test_a_provider_answer_nested_too_deep_is_a_clear_502_and_a_stream_event_so_is_left_unread(
    sim: SimServer, tmp_path: Path
) -> None:
    """JSON nested past Python's recursion (400 KB of brackets, under every size bound) is bad JSON: a whole answer
    gets the 502 any unreadable answer gets, a stream event of it is passed on unread; never a 500."""
    deep = b"[" * 200_000 + b"]" * 200_000
    usage = {"prompt_tokens": 9, "completion_tokens": 4}
    with ReplayServer() as replay:
        raw = gateway_config(sim.url, tmp_path)
        raw["providers"]["replay"] = {"kind": "openai", "base_url": f"{replay.url}/v1"}
        with GatewayServer(raw) as gw:
            replay.answer_bytes(deep, b"application/json")
            r = post(f"{gw.url}/replay/chat/completions", json=CHAT)
            assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_bad_response", r.text
            replay.answer_sse(
                [
                    {"model": "gpt-4o-mini", "choices": [{"index": 0, "delta": {"content": "hi"}}]},
                    deep.decode(),
                    {"model": "gpt-4o-mini", "choices": [], "usage": usage},
                    "[DONE]",
                ]
            )
            with stream_post(f"{gw.url}/replay/chat/completions", CHAT) as s:
                body = s.read()
            assert s.status_code == 200 and deep in body and body.endswith(b"data: [DONE]\n\n")
            bad, streamed = gw.records(2)
    assert (bad["status"], bad["error_type"], bad["http_status"]) == ("error", "bad_response", 502)
    assert bad["usage_source"] == "estimated" and bad["input_tokens"] > 0, "the provider may have billed: estimate"
    assert (streamed["status"], streamed["error_type"], streamed["usage_source"]) == ("ok", None, "provider")
    assert (streamed["input_tokens"], streamed["output_tokens"]) == (9, 4)
    assert streamed["cost_usd"] == pytest.approx(independent_cost("gpt-4o-mini", "openai", {"input": 9, "output": 4}))
