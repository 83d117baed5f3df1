"""No spelling of a metered endpoint reaches a provider unmetered, and no path leaves a provider's base URL.

Every path below goes to the real daemon byte for byte under a daily cap; each is either refused before the
upstream sees it, or metered with the provider's usage and forwarded on its canonical path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.gateway.path import InvalidPath, canonical_segments, parse_route
from tests.servers import GatewayServer, SimServer, raw_request

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "water the basil?"}]}
MSG = {"model": "claude-haiku-4-5", "max_tokens": 20, "messages": [{"role": "user", "content": "water the basil?"}]}

REFUSED = [
    # (request target, body, status, code)
    ("/openai/x/../chat/completions", CHAT, 400, "invalid_path"),
    ("/openai/./chat/completions", CHAT, 400, "invalid_path"),
    ("/openai/chat/./completions", CHAT, 400, "invalid_path"),
    ("/openai/chat/completions/..", CHAT, 400, "invalid_path"),
    ("/openai/chat//completions", CHAT, 400, "invalid_path"),
    ("//openai/chat/completions", CHAT, 400, "invalid_path"),
    ("/openai//chat/completions", CHAT, 400, "invalid_path"),
    ("/openai/chat%2Fcompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat%2fcompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat%252Fcompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat%25252fcompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat/completions%2F", CHAT, 400, "invalid_path"),
    ("/openai/%2E%2E/openai/chat/completions", CHAT, 400, "invalid_path"),
    ("/openai/%2e/chat/completions", CHAT, 400, "invalid_path"),
    ("/openai/chat\\completions", CHAT, 400, "invalid_path"),
    ("/openai/chat%5Ccompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat%5ccompletions", CHAT, 400, "invalid_path"),
    ("/openai/chat/completions%00", CHAT, 400, "invalid_path"),
    ("/openai/chat/completions%0A", CHAT, 400, "invalid_path"),
    ("/openai/chat%09/completions", CHAT, 400, "invalid_path"),
    ("/openai/chat/completions%zz", CHAT, 400, "invalid_path"),
    ("/openai/../../admin", CHAT, 400, "invalid_path"),
    ("/openai/../anthropic/v1/messages", MSG, 400, "invalid_path"),
    ("/w/wf/openai/../../v1/messages", MSG, 400, "invalid_path"),
    ("/w/../openai/chat/completions", CHAT, 400, "invalid_path"),
    ("/v1/../anthropic/v1/messages", MSG, 400, "invalid_path"),
    ("/v1/%2e%2e/anthropic/v1/messages", MSG, 400, "invalid_path"),
    ("/OPENAI/chat/completions", CHAT, 404, "unknown_provider"),
    ("/openai/Chat/Completions", CHAT, 403, "unmetered_endpoint"),
    ("/openai/chat/completions;x", CHAT, 403, "unmetered_endpoint"),
    ("/openai/chat/completions%3F", CHAT, 403, "unmetered_endpoint"),
    ("/openai/chat/completions%23", CHAT, 403, "unmetered_endpoint"),
]

METERED = [
    # (request target, body, endpoint, what the provider sees, workflow)
    ("/openai/%63hat/completions", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/openai/chat/completion%73", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/openai/%63%68%61%74/completions", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/openai/chat/completions/", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/openai/chat/completions?trace=1", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/v1/chat/completions", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/v1/%63hat/completions", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
    ("/w/garden/openai/chat/completions", CHAT, "chat/completions", "/v1/chat/completions", "garden"),
    ("/w/gar%64en/openai/%63hat/completions", CHAT, "chat/completions", "/v1/chat/completions", "garden"),
    ("/w/%F0%9F%8C%B1/openai/chat/completions", CHAT, "chat/completions", "/v1/chat/completions", "🌱"),
    ("/anthropic/v1/%6Dessages", MSG, "messages", "/v1/messages", "untagged"),
    ("/anthropic/v1/messages/", MSG, "messages", "/v1/messages", "untagged"),
    ("/anthropic/%761/messages", MSG, "messages", "/v1/messages", "untagged"),
    ("/anthropic/v1/messages?beta=true", MSG, "messages", "/v1/messages", "untagged"),
    ("/w/garden/anthropic/v1/%6d%65%73%73%61%67%65%73", MSG, "messages", "/v1/messages", "garden"),
    ("/anthropic/v1/chat/completions", CHAT, "chat/completions", "/v1/chat/completions", "untagged"),
]


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimServer, GatewayServer]]:
    from tests.servers import gateway_config

    with SimServer() as sim:
        raw = gateway_config(sim.url, tmp_path_factory.mktemp("paths"), budgets={"daily_usd": 5})
        with GatewayServer(raw) as gw:
            yield sim, gw


def send(gw: GatewayServer, target: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    status, payload = raw_request(
        gw.url, "POST", target, json.dumps(body).encode(), {"content-type": "application/json"}
    )
    return status, json.loads(payload)


def code_of(answer: dict[str, Any]) -> str:
    error = answer["error"]
    return str(error.get("code") or error.get("type"))


@pytest.mark.parametrize(("target", "body", "status", "code"), REFUSED)
def test_spellings_that_are_refused_never_reach_the_provider(
    capped: tuple[SimServer, GatewayServer], target: str, body: dict[str, Any], status: int, code: str
) -> None:
    sim, gw = capped
    before, records = sim.sim.requests, len(gw.records())
    got, answer = send(gw, target, body)
    assert (got, code_of(answer)) == (status, code), answer
    assert sim.sim.requests == before, "the provider saw it"
    rec = gw.records(records + 1)[-1]
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("blocked", code, status)


@pytest.mark.parametrize(("target", "body", "endpoint", "upstream", "workflow"), METERED)
def test_spellings_that_pass_are_metered_on_their_canonical_path(
    capped: tuple[SimServer, GatewayServer],
    target: str,
    body: dict[str, Any],
    endpoint: str,
    upstream: str,
    workflow: str,
) -> None:
    sim, gw = capped
    records = len(gw.records())
    got, answer = send(gw, target, body)
    assert got == 200, answer
    seen = sim.sim.seen[-1]
    assert seen.path == upstream
    rec = gw.records(records + 1)[-1]
    assert (rec["status"], rec["endpoint"], rec["workflow"]) == ("ok", endpoint, workflow)
    assert rec["usage_source"] == "provider" and rec["input_tokens"] > 0 and rec["output_tokens"] > 0
    assert rec["cost_usd"] > 0 and rec["price_source"].startswith("genai-prices:")


def test_the_canonical_path_keeps_what_gemini_paths_need() -> None:
    route = parse_route(b"/gemini/v1beta/models/gemini-2.5-flash:generateContent", "openai", "")
    assert route is not None and route.upstream_path == "v1beta/models/gemini-2.5-flash:generateContent"
    spaced = parse_route(b"/w/my%20job/openai/chat/completions", "openai", "")
    assert spaced is not None and spaced.workflow == "my job"


segment = st.text(st.characters(codec="utf-8", exclude_characters="/"), min_size=1, max_size=12)


@given(st.lists(segment, min_size=1, max_size=6))
def test_a_canonical_path_decodes_to_the_segments_that_went_in_and_never_has_dot_segments(parts: list[str]) -> None:
    from urllib.parse import quote

    target = ("/" + "/".join(quote(p, safe="") for p in parts)).encode()
    try:
        got = canonical_segments(target)
    except InvalidPath:
        assert any(p in (".", "..") or any(ch in "\\%" or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in p) for p in parts)
        return
    assert got == parts
    assert "." not in got and ".." not in got


@given(st.binary(max_size=40))
def test_any_raw_path_is_refused_or_canonical(raw: bytes) -> None:
    target = b"/" + raw
    try:
        parts = canonical_segments(target)
    except InvalidPath:
        return
    assert all(p not in ("", ".", "..") and "/" not in p and "\\" not in p for p in parts)
    assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for p in parts for ch in p)
