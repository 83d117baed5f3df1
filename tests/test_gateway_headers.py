"""Attribution and what crosses to the provider: our headers stay home, keys are swapped, never logged."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from picometer.config import ProviderConfig, Secret
from picometer.gateway.forward import upstream_headers
from tests.oracle import independent_cost
from tests.servers import GatewayServer, SimServer

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}
WF_KEY = "pm-summarizer-0123456789"


def post(url: str, **kwargs: object) -> httpx.Response:
    return httpx.post(url, timeout=10, trust_env=False, **kwargs)  # type: ignore[arg-type]


def test_our_headers_are_stripped_and_the_client_key_passes_through(sim: SimServer, gateway: GatewayServer) -> None:
    r = post(
        f"{gateway.url}/openai/chat/completions",
        json=CHAT,
        headers={
            "authorization": "Bearer sk-client-own",
            "x-picometer-workflow": "wf",
            "x-picometer-env": "staging",
            "x-picometer-prompt-version": "v7",
            "x-request-id": "corr-1",
            "x-custom": "kept",
        },
    )
    assert r.status_code == 200
    seen = sim.sim.seen[-1].headers
    assert not [h for h in seen if h.startswith("x-picometer-")] and "x-request-id" not in seen
    assert seen["authorization"] == "Bearer sk-client-own" and seen["x-custom"] == "kept"
    [rec] = gateway.records(1)
    tags = (rec["workflow"], rec["env"], rec["prompt_version"], rec["correlation_id"])
    assert tags == ("wf", "staging", "v7", "corr-1")


def test_virtual_keys_pick_the_workflow_and_are_swapped_for_the_provider_key(
    make_gateway: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = make_gateway(
        env={"OPENAI_KEY": "sk-real-openai", "ANTHROPIC_KEY": "sk-ant-real"},
        providers={
            "openai": {"kind": "openai", "base_url": f"{sim.url}/v1", "api_key": "env:OPENAI_KEY"},
            "anthropic": {"kind": "anthropic", "base_url": sim.url, "api_key": "env:ANTHROPIC_KEY"},
        },
        workflows={"summarizer": {"keys": [WF_KEY], "env": "batch"}},
    )
    # the key outranks the /w/ path and the header
    post(
        f"{gw.url}/w/other/openai/chat/completions",
        json=CHAT,
        headers={"authorization": f"Bearer {WF_KEY}", "x-picometer-workflow": "header-wf"},
    )
    assert sim.sim.seen[-1].headers["authorization"] == "Bearer sk-real-openai"
    post(f"{gw.url}/anthropic/v1/messages", json=MSG, headers={"x-api-key": WF_KEY})
    assert sim.sim.seen[-1].headers["x-api-key"] == "sk-ant-real"
    assert "authorization" not in sim.sim.seen[-1].headers
    # path outranks header
    post(f"{gw.url}/w/pathwf/openai/chat/completions", json=CHAT, headers={"x-picometer-workflow": "header-wf"})
    a, b, c = gw.records(3)
    assert (a["workflow"], a["env"]) == ("summarizer", "batch")
    assert b["workflow"] == "summarizer" and c["workflow"] == "pathwf"
    log = gw.daemon.usage_log.path.read_text()
    assert WF_KEY not in log and "sk-real-openai" not in log and "sk-ant-real" not in log


def test_a_virtual_key_without_a_provider_key_is_refused(
    make_gateway: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = make_gateway(workflows={"summarizer": {"keys": [WF_KEY]}})
    r = post(f"{gw.url}/openai/chat/completions", json=CHAT, headers={"authorization": f"Bearer {WF_KEY}"})
    assert r.status_code == 401 and "[providers.openai].api_key" in r.json()["error"]["message"]
    assert sim.sim.requests == 0


def test_required_client_keys(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(
        env={"K": "sk-real"},
        server={"listen": "127.0.0.1:0", "client_keys": ["pm-client-0123456789"]},
        providers={"openai": {"kind": "openai", "base_url": "http://127.0.0.1:1/v1", "api_key": "env:K"}},
    )
    r = post(f"{gw.url}/openai/chat/completions", json=CHAT)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r2 = post(f"{gw.url}/openai/chat/completions", json=CHAT, headers={"authorization": "Bearer pm-wrong-0123456789"})
    assert r2.status_code == 401
    assert "pm-wrong" not in gw.daemon.usage_log.path.read_text()


def test_bare_v1_goes_to_the_default_provider(gateway: GatewayServer) -> None:
    r = post(f"{gateway.url}/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    [rec] = gateway.records(1)
    assert rec["provider"] == "openai" and rec["endpoint"] == "chat/completions" and rec["output_tokens"] > 0


def test_health_and_status(gateway: GatewayServer) -> None:
    assert httpx.get(f"{gateway.url}/-/health", trust_env=False).json() == {"status": "ok"}
    post(f"{gateway.url}/openai/chat/completions", json=CHAT)
    gateway.records(1)
    status = httpx.get(f"{gateway.url}/-/status", trust_env=False).json()
    assert status["requests"] == 1 and status["requests_by_status"]["ok"] == 1
    assert status["cost_usd_since_start"] > 0


def test_hop_by_hop_headers_never_cross() -> None:
    headers = [
        (b"Connection", b"keep-alive, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Host", b"127.0.0.1:8787"),
        (b"Authorization", b"Bearer sk-client"),
        (b"X-Picometer-Workflow", b"w"),
        (b"Anthropic-Version", b"2023-06-01"),
    ]
    out = dict(upstream_headers(headers, ProviderConfig(kind="anthropic"), Secret("sk-ant")))
    assert out == {b"Anthropic-Version": b"2023-06-01", b"x-api-key": b"sk-ant"}
    passthrough = dict(upstream_headers(headers, ProviderConfig(kind="openai"), None))
    assert passthrough[b"Authorization"] == b"Bearer sk-client"


def test_a_cookie_set_for_one_caller_never_rides_on_another_callers_request(
    sim: SimServer, gateway: GatewayServer
) -> None:
    first = post(f"{gateway.url}/openai/chat/completions", json=CHAT, headers={"x-sim-set-cookie": "1"})
    assert first.headers["set-cookie"].startswith("sim_session="), "the caller still gets its cookie"
    post(f"{gateway.url}/openai/chat/completions", json=CHAT)
    assert "cookie" not in sim.sim.seen[-1].headers


def test_the_provider_gets_its_own_host_and_the_length_of_the_body_it_is_sent(
    sim: SimServer, gateway: GatewayServer
) -> None:
    """picometer writes the Host and Content-Length headers itself (the client's name picometer, and a body it
    changed has another length): the provider's address, and the bytes it received."""
    provider = httpx.URL(sim.url)
    stream = {**CHAT, "stream": True}  # picometer asks for the stream's usage: the body it sends is longer
    with httpx.stream("POST", f"{gateway.url}/openai/chat/completions", json=stream, trust_env=False) as r:
        r.read()
    seen = sim.sim.seen[-1]
    assert b'"include_usage"' in seen.body
    assert seen.headers["host"] == f"{provider.host}:{provider.port}"
    assert int(seen.headers["content-length"]) == len(seen.body)
    assert httpx.get(f"{gateway.url}/openai/models", trust_env=False).status_code == 200
    listed = sim.sim.seen[-1]
    assert listed.method == "GET" and "content-length" not in listed.headers, "a GET carries no body, nor says so"
    assert listed.headers["host"] == f"{provider.host}:{provider.port}"
    rec = next(rec for rec in gateway.records(2) if rec["endpoint"] == "chat/completions")
    assert (rec["status"], rec["error_type"], rec["stream"], rec["usage_source"]) == ("ok", None, True, "provider")
    tokens = {"input": rec["input_tokens"], "output": rec["output_tokens"]}
    assert rec["output_tokens"] > 0 and rec["cost_usd"] == pytest.approx(
        independent_cost("gpt-4o-mini", "openai", tokens)
    )
