"""Web pages in the user's browser: a page on another site cannot spend through picometer's loopback port (it
adds the provider key), cannot read or change the control routes by rebinding its name to 127.0.0.1, and an
admin token cannot be guessed at network speed. The HTTP tests run against the real daemon on a loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.config import ConfigError
from picometer.gateway.origin import origin_allowed
from picometer.gateway.tries import CLIENTS, TRIES, WINDOW_S, Tries, who
from tests.servers import GatewayServer, SimServer, gateway_config

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
EVIL = "https://evil.example"
ADMIN = "admin-token-for-the-origin-tests"


def post_chat(url: str, headers: dict[str, str]) -> httpx.Response:
    """What a page's fetch(..., {method: "POST", body: JSON text}) sends: text/plain, so no preflight."""
    body = json.dumps(CHAT)
    return httpx.post(
        f"{url}/openai/chat/completions",
        content=body,
        headers={"content-type": "text/plain;charset=UTF-8", **headers},
        trust_env=False,
        timeout=10,
    )


def test_a_page_on_another_site_cannot_spend_and_its_refusal_is_recorded(
    sim: SimServer, make_gateway: Callable[..., GatewayServer]
) -> None:
    gw = make_gateway()
    before = sim.sim.requests
    for origin in (EVIL, "null", "http://127.0.0.1.evil.example", "http://localhost.evil.example:8787"):
        r = post_chat(gw.url, {"origin": origin, "x-picometer-workflow": "browsing"})
        assert r.status_code == 403, origin
        error = r.json()["error"]
        assert error["code"] == "origin_not_allowed" and "[server].allowed_origins" in error["message"]
    assert sim.sim.requests == before, "nothing reached the provider"
    records = gw.records(wait_for=4)
    assert [(r["status"], r["error_type"], r["workflow"]) for r in records] == [
        ("blocked", "origin_not_allowed", "browsing")
    ] * 4
    assert all(r["cost_usd"] == 0 for r in records)


def test_pages_on_this_machine_listed_ones_and_non_browsers_are_served(
    sim: SimServer, make_gateway: Callable[..., GatewayServer]
) -> None:
    gw = make_gateway(server={"allowed_origins": ["https://Chat.Example.org:443", "http://lan.example:80/"]})
    pages = ("http://127.0.0.1:3000", "http://localhost:5173", "http://[::1]:8080", "https://chat.example.org")
    for origin in (*pages, "http://lan.example"):  # a browser leaves the default port out
        assert post_chat(gw.url, {"origin": origin}).status_code == 200, origin
    assert post_chat(gw.url, {}).status_code == 200, "an SDK or curl sends no Origin"
    assert post_chat(gw.url, {"origin": "https://chat.example.org.evil.example"}).status_code == 403
    assert [r["status"] for r in gw.records(wait_for=7)] == ["ok"] * 6 + ["blocked"]


def test_a_page_with_a_client_key_is_served(sim: SimServer, tmp_path: Path) -> None:
    key = "pm-" + "k" * 32
    raw = gateway_config(sim.url, tmp_path, server={"client_keys": [key]})
    raw["providers"]["openai"]["api_key"] = "env:PM_OPENAI"
    with GatewayServer(raw, env={"PM_OPENAI": "sk-provider-key"}) as gw:
        assert post_chat(gw.url, {"origin": EVIL}).status_code == 401, "no key: the key check answers first"
        assert post_chat(gw.url, {"origin": EVIL, "authorization": f"Bearer {key}"}).status_code == 200
        refused, served = gw.records(wait_for=2)
        assert (refused["status"], refused["error_type"], refused["cost_usd"]) == ("blocked", "invalid_api_key", 0)
        assert (served["status"], served["error_type"], served["usage_source"]) == ("ok", None, "provider")
        assert served["input_tokens"] > 0 and served["output_tokens"] > 0 and served["cost_usd"] > 0


def test_a_page_that_rebinds_its_name_to_this_machine_reads_nothing_through_the_proxy(
    sim: SimServer, make_gateway: Callable[..., GatewayServer]
) -> None:
    gw = make_gateway()
    before = sim.sim.requests
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=10) as c:
        rebound = c.get("/openai/models", headers={"host": "evil.example:8787"})  # same-origin GET: no Origin
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "origin_not_allowed"
        assert "'evil.example:8787'" in rebound.json()["error"]["message"]
        assert sim.sim.requests == before, "nothing reached the provider"
        for named in ("localhost:8787", "127.0.0.1", socket.gethostname(), "10.0.0.5:8787"):
            assert c.get("/openai/models", headers={"host": named}).status_code == 200, named
    records = gw.records(wait_for=5)
    assert [(r["status"], r["error_type"], r["cost_usd"]) for r in records[:1]] == [
        ("blocked", "origin_not_allowed", 0)
    ]
    assert [(r["status"], r["http_status"]) for r in records[1:]] == [("ok", 200)] * 4


def test_an_extensions_origin_can_be_allowed(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(server={"allowed_origins": ["chrome-extension://abcdefghijklmnop"]})
    assert post_chat(gw.url, {"origin": "chrome-extension://abcdefghijklmnop"}).status_code == 200
    assert post_chat(gw.url, {"origin": "chrome-extension://other"}).status_code == 403
    served, refused = gw.records(wait_for=2)
    assert (served["status"], served["usage_source"]) == ("ok", "provider") and served["cost_usd"] > 0
    assert (refused["status"], refused["error_type"], refused["cost_usd"]) == ("blocked", "origin_not_allowed", 0)


def test_allowed_origins_must_be_origins(make_gateway: Callable[..., GatewayServer]) -> None:
    for bad in ("chat.example.org", "https://chat.example.org/app", "null", "https://", "https://a b"):
        with pytest.raises(ConfigError) as e:
            make_gateway(server={"allowed_origins": [bad]})
        assert "[server].allowed_origins[0]" in str(e.value) and "https://chat.example.org" in str(e.value)


LOOPBACK_NAMES = st.sampled_from(["localhost", "127.0.0.1", "127.3.2.1", "[::1]"])
OTHER_NAMES = st.from_regex(r"\A[a-z0-9.-]{1,30}\Z").filter(lambda h: h != "localhost" and not h.startswith("127."))


@given(
    st.sampled_from(["http", "https", "HTTP", "ftp", "chrome-extension"]),
    st.one_of(LOOPBACK_NAMES.map(lambda h: (h, True)), OTHER_NAMES.map(lambda h: (h, False))),
    st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")),
)
def test_only_a_loopback_page_passes_without_a_list(scheme: str, host: tuple[str, bool], port: str) -> None:
    origin = f"{scheme}://{host[0]}{port}"
    assert origin_allowed(origin, ()) == (host[1] and scheme.lower() in ("http", "https"))
    assert origin_allowed(origin, (origin.upper() + "/",)), "a listed origin passes, in any case"
    assert not origin_allowed(origin + ".evil.example", (origin,))
    assert origin_allowed(None, ())


# ---------------------------------------------------------------- control routes and the page


def test_control_routes_refuse_a_rebound_name_and_a_web_page(
    sim: SimServer, make_gateway: Callable[..., GatewayServer]
) -> None:
    gw = make_gateway()
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=10) as c:
        assert c.get("/-/status").status_code == 200
        assert c.get("/-/status", headers={"host": "localhost:8787"}).status_code == 200
        rebound = c.get("/-/status", headers={"host": "evil.example:8787"})
        assert rebound.status_code == 403 and "127.0.0.1, localhost" in rebound.json()["error"]["message"]
        for named in (socket.gethostname(), "192.168.1.20:8787", "[::1]:8787"):  # no other site's page sends these
            assert c.get("/-/status", headers={"host": named}).status_code == 200, named
        assert c.get("/metrics", headers={"host": "evil.example"}).status_code == 403
        assert c.post("/-/pause/news", headers={"origin": EVIL}, params={"force": "1"}).status_code == 403
        assert c.post("/-/pause/news", headers={"host": "evil.example:8787"}, params={"force": "1"}).status_code == 403
        assert post_chat(gw.url, {"x-picometer-workflow": "news"}).status_code == 200, "never paused"
        assert c.get("/-/health", headers={"host": "evil.example"}).status_code == 200, "health says nothing"
        ok = c.post("/-/pause/news", headers={"origin": "http://127.0.0.1:8787"}, params={"force": "1"})
        assert ok.status_code == 200
    page = httpx.get(f"{gw.url}/-/ui", headers={"host": "evil.example"}, trust_env=False)
    assert page.status_code == 403


def test_wrong_admin_tokens_are_slowed_per_client(sim: SimServer, make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(env={"PM_ADMIN": ADMIN}, server={"admin_token": "env:PM_ADMIN"})
    right = {"authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=gw.url, trust_env=False, timeout=10) as c:
        for i in range(TRIES):  # the control routes and the login form count together
            if i % 2:
                assert c.get("/-/status", headers={"authorization": "Bearer guess"}).status_code == 401
            else:
                assert c.post("/-/ui/login", data={"token": "guess"}).status_code == 401
        locked = c.get("/-/status", headers=right)
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "too_many_attempts"
        assert 0 < int(locked.headers["retry-after"]) <= WINDOW_S
        assert "try again in 15 min" in locked.json()["error"]["message"]
        page = c.post("/-/ui/login", data={"token": ADMIN})
        assert page.status_code == 429 and "Too many tries" in page.text and "set-cookie" not in page.headers

    async def from_the_lan() -> int:  # another client is not slowed by the first one's guesses
        transport = httpx.ASGITransport(app=gw.daemon.gateway, client=("192.168.1.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://pi.local:8787") as lan:
            return (await lan.get("/-/status", headers=right)).status_code

    assert asyncio.run(from_the_lan()) == 200


def test_tries_open_again_after_the_window_and_stay_bounded() -> None:
    now = [0.0]
    tries = Tries(lambda: now[0])
    for _ in range(TRIES - 1):
        tries.wrong("10.0.0.1")
    assert tries.wait_s("10.0.0.1") == 0
    tries.right("10.0.0.1")
    for _ in range(TRIES):
        tries.wrong("10.0.0.1")
    assert tries.wait_s("10.0.0.1") == WINDOW_S and tries.wait_s("10.0.0.2") == 0
    now[0] = WINDOW_S - 0.5
    assert tries.wait_s("10.0.0.1") == 1
    now[0] = WINDOW_S
    assert tries.wait_s("10.0.0.1") == 0
    for _ in range(TRIES):
        tries.wrong("2001:db8::1")
    assert tries.wait_s("2001:db8::ffff") > 0, "one /64 is one client"
    assert tries.wait_s("2001:db8:0:1::1") == 0
    assert who("::ffff:10.0.0.9") == "10.0.0.9"

    now[0] = 10 * WINDOW_S
    for _ in range(TRIES):
        tries.wrong("10.0.0.1")
    for i in range(CLIENTS * 4):  # a flood of addresses: neither memory nor a way to push the lock out
        tries.wrong(f"10.1.{i // 256}.{i % 256}")
    assert len(tries._wrong) <= CLIENTS + 1
    assert tries.wait_s("10.0.0.1") > 0, "the locked address is still locked"
    assert tries.wait_s("10.9.9.9") > 0, "newcomers while the table is full share one count, long used up"
    now[0] += WINDOW_S
    assert tries.wait_s("10.9.9.9") == 0 and tries.wait_s("10.0.0.1") == 0, "every window ends"
