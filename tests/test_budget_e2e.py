"""The budget guard and the kill switch through the real daemon, with real clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anthropic
import httpx
import openai
import pytest

from picometer.simulator import SimSettings
from picometer.store.usagelog import read_records
from tests.clocks import ManualClock
from tests.servers import GatewayServer, SimServer, free_port, gateway_config, stream_post

BERLIN = ZoneInfo("Europe/Berlin")
CHAT = {"model": "gpt-4o-mini", "max_tokens": 50, "messages": [{"role": "user", "content": "summarize the news"}]}


def seconds_to_berlin_midnight(now: datetime) -> float:
    local = now.astimezone(BERLIN)
    midnight = datetime(local.year, local.month, local.day, tzinfo=BERLIN) + timedelta(days=1)
    tomorrow = datetime(midnight.year, midnight.month, midnight.day, tzinfo=BERLIN)  # DST-safe
    return (tomorrow.astimezone(UTC) - now).total_seconds()


async def flood(url: str, n: int) -> list[httpx.Response]:
    # The tier named, so each call holds the standard price, not the priority tier an unnamed one could get.
    body = {**CHAT, "service_tier": "default"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=n), timeout=60, trust_env=False) as client:
        return await asyncio.gather(*(client.post(url, json=body) for _ in range(n)))


def test_200_concurrent_calls_never_pass_a_tiny_daily_cap(tmp_path: Path) -> None:
    cap = 0.001
    with SimServer(SimSettings(latency_s=0.05)) as sim:
        raw = gateway_config(
            sim.url,
            tmp_path,
            server={"listen": "127.0.0.1:0", "max_in_flight": 200, "max_connections": 250},  # all 200 at once
            budgets={"timezone": "Europe/Berlin"},
            workflows={"runaway": {"daily_usd": cap}},
        )
        with GatewayServer(raw) as gw:
            before = datetime.now(UTC)
            responses = asyncio.run(flood(f"{gw.url}/w/runaway/openai/chat/completions", 200))
            records = gw.records(200)
            status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) + len(refused) == 200 and ok and refused
    spent = sum(r["cost_usd"] for r in records if r["status"] == "ok")
    assert spent <= cap, "settled spend stays within the cap"
    assert min(r["cost_usd"] for r in records if r["status"] == "ok") * 200 > cap, "unguarded, they would pass it"
    wait = seconds_to_berlin_midnight(before)
    for r in refused:
        error = r.json()["error"]
        assert error["code"] == "budget_exceeded" and "the daily cap of workflow 'runaway'" in error["message"]
        assert abs(int(r.headers["retry-after"]) - wait) < 30, "seconds until local midnight"
        assert r.headers["x-picometer-request-id"]
    assert sorted(r["status"] for r in records) == sorted(["ok"] * len(ok) + ["blocked"] * len(refused))
    assert all(r["budget"] == "workflow:runaway/day" for r in records if r["status"] == "blocked")
    (day,) = [b for b in status["budgets"] if b["scope"] == "workflow:runaway" and b["period"] == "day"]
    assert day["spent_usd"] == pytest.approx(spent, abs=1e-9) and day["reserved_usd"] == 0
    alerts = [(a["kind"], a["scope"], a["key"]) for a in status["alerts"]]
    assert ("budget_threshold", "workflow:runaway", "budget_threshold:workflow:runaway/day:0.5") in alerts
    blocked_key = "budget_blocked:workflow:runaway/day"
    assert alerts.count(("budget_blocked", "workflow:runaway", blocked_key)) == 1, "the first refusal is told once"
    blocked = next(a for a in status["alerts"] if a["kind"] == "budget_blocked")
    assert blocked["severity"] == "critical"
    assert "is refusing calls" in blocked["message"] and "held by calls in flight" in blocked["message"]
    assert "[workflows.runaway].daily_usd" in blocked["message"]
    assert sim.sim.requests == len(ok), "refused calls never reach the provider"


def test_the_official_sdks_surface_the_refusal_and_do_not_retry_it(
    make_gateway: Callable[..., GatewayServer],
) -> None:
    gw = make_gateway(workflows={"broke": {"daily_usd": 1e-9}})
    client = openai.OpenAI(base_url=f"{gw.url}/w/broke/openai", api_key="sk-test")  # default retries on
    with pytest.raises(openai.RateLimitError) as oe:
        client.chat.completions.create(**CHAT)
    assert "budget exceeded" in str(oe.value) and oe.value.code == "budget_exceeded"
    assert int(oe.value.response.headers["retry-after"]) > 0
    claude = anthropic.Anthropic(base_url=f"{gw.url}/w/broke/anthropic", api_key="sk-ant-test")
    with pytest.raises(anthropic.RateLimitError) as ae:
        claude.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert "budget exceeded" in str(ae.value) and "the daily cap of workflow 'broke'" in str(ae.value)
    records = gw.records(2)
    assert [r["status"] for r in records] == ["blocked", "blocked"], "one record each: the SDKs did not retry"


def test_a_stream_cut_early_settles_to_what_was_used(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(workflows={"job": {"daily_usd": 1.0}})
    with (
        stream_post(f"{gw.url}/w/job/openai/chat/completions", CHAT, {"x-sim-fault": "cut"}) as r,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        r.read()
    (record,) = gw.records(1)
    assert record["status"] == "error" and record["cost_usd"] > 0
    status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    day = next(b for b in status["budgets"] if b["scope"] == "workflow:job" and b["period"] == "day")
    assert day["spent_usd"] == pytest.approx(record["cost_usd"], abs=1e-12) and day["reserved_usd"] == 0


def test_a_call_past_an_alert_only_cap_goes_through_and_its_record_names_the_cap(
    make_gateway: Callable[..., GatewayServer],
) -> None:
    gw = make_gateway(workflows={"job": {"daily_usd": 0.000001, "on_exceed": "alert"}})
    for _ in range(2):
        r = httpx.post(f"{gw.url}/w/job/openai/chat/completions", json=CHAT, trust_env=False)
        assert r.status_code == 200
    first, second = gw.records(2)
    assert first["status"] == second["status"] == "ok"
    assert second["budget"] == "workflow:job/day", "the first call took the day's spend past the cap"


def test_control_routes_without_an_admin_token_answer_only_on_loopback(gateway: GatewayServer) -> None:
    async def from_lan() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway.daemon.gateway, client=("192.168.1.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://pi") as client:
            return await client.post("/-/pause/nightly")

    r = asyncio.run(from_lan())
    assert r.status_code == 403 and "admin_token" in r.json()["error"]["message"]

    async def status_from_lan() -> httpx.Response:
        transport = httpx.ASGITransport(app=gateway.daemon.gateway, client=("192.168.1.20", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://pi") as client:
            return await client.get("/-/status")

    assert asyncio.run(status_from_lan()).status_code == 403, "spend and workflow names stay on this machine"
    assert httpx.get(f"{gateway.url}/-/status", trust_env=False).json()["pauses"] == []


def test_free_providers_and_unpriced_models_are_not_blocked_by_dollar_caps(
    sim: SimServer, make_gateway: Callable[..., GatewayServer]
) -> None:
    gw = make_gateway(
        providers={"ollama": {"kind": "openai", "base_url": f"{sim.url}/v1", "free": True}},
        budgets={"daily_usd": 1e-9, "unpriced": "allow"},
    )
    assert httpx.post(f"{gw.url}/ollama/chat/completions", json=CHAT, trust_env=False).status_code == 200
    mystery = {**CHAT, "model": "mystery-model-9000"}
    assert httpx.post(f"{gw.url}/openai/chat/completions", json=mystery, trust_env=False).status_code == 200
    assert httpx.post(f"{gw.url}/openai/chat/completions", json=CHAT, trust_env=False).status_code == 429


OVER_CAP = [
    ("openai/chat/completions", {**CHAT, "max_tokens": 500}, "max_tokens"),
    ("openai/responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": 500}, "max_output_tokens"),
    (
        "anthropic/v1/messages",
        {"model": "claude-haiku-4-5", "max_tokens": 500, "messages": [{"role": "user", "content": "hi"}]},
        "max_tokens",
    ),
]


@pytest.mark.parametrize(("path", "body", "field"), OVER_CAP, ids=["chat", "responses", "anthropic"])
def test_over_cap_clamp_and_reject_through_the_gateway(
    sim: SimServer, make_gateway: Callable[..., GatewayServer], path: str, body: dict[str, Any], field: str
) -> None:
    gw = make_gateway(
        workflows={
            "loose": {"max_tokens_per_request": 64, "over_cap": "clamp"},
            "strict": {"max_tokens_per_request": 64, "over_cap": "reject"},
        }
    )
    r = httpx.post(f"{gw.url}/w/loose/{path}", json=body, trust_env=False)
    assert r.status_code == 200
    assert json.loads(sim.sim.seen[-1].body)[field] == 64, "the provider saw the clamped limit"
    before = sim.sim.requests
    r = httpx.post(f"{gw.url}/w/strict/{path}", json=body, trust_env=False)
    assert r.status_code == 400 and sim.sim.requests == before
    error = r.json()["error"]
    assert error["type"] == "max_tokens_over_cap" and f"{field} = 500" in error["message"]
    assert "[workflows.strict].max_tokens_per_request" in error["message"]
    if path.startswith("anthropic"):
        assert r.json()["type"] == "error", "in the Anthropic error shape"
    unlimited = {k: v for k, v in body.items() if k != field}
    assert httpx.post(f"{gw.url}/w/strict/{path}", json=unlimited, trust_env=False).status_code == 200
    assert json.loads(sim.sim.seen[-1].body)[field] == 64, "a call without a limit gets the cap written in"


def test_pause_blocks_one_workflow_and_resume_lets_it_through(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(server={"admin_token": "env:ADMIN"}, env={"ADMIN": "s3cret-admin"}, workflows={"nightly": {}})
    post = lambda path, **kw: httpx.post(f"{gw.url}{path}", trust_env=False, **kw)  # noqa: E731
    auth = {"authorization": "Bearer s3cret-admin"}
    assert post("/-/pause/nightly").status_code == 401, "the admin token is required"
    assert post("/-/pause/nightly", headers={"authorization": "Bearer wrong"}).status_code == 401
    r = post("/-/pause/nightly", headers=auth, json={"for": "2h"})
    assert r.status_code == 200 and r.json()["paused"] and r.json()["until"]
    blocked = post("/w/nightly/openai/chat/completions", json=CHAT)
    assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "workflow_paused"
    assert 7190 <= int(blocked.headers["retry-after"]) <= 7200
    assert "picometer resume nightly" in blocked.json()["error"]["message"]
    assert post("/w/other/openai/chat/completions", json=CHAT).status_code == 200, "other workflows go on"
    assert httpx.get(f"{gw.url}/-/status", trust_env=False).status_code == 401, "spend is not for everyone"
    status = httpx.get(f"{gw.url}/-/status", headers=auth, trust_env=False).json()
    assert [p["workflow"] for p in status["pauses"]] == ["nightly"]
    assert post("/-/resume/nightly", headers=auth).json() == {
        "workflow": "nightly",
        "paused": False,
        "was_paused": True,
        "saved": True,
    }
    assert post("/w/nightly/openai/chat/completions", json=CHAT).status_code == 200
    assert post("/-/pause/nightly", headers=auth, params={"for": "soon"}).status_code == 400


def test_restart_keeps_the_spend_and_a_pause_that_expires_on_time(sim: SimServer, tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 23, 10, 0, tzinfo=UTC))
    raw = gateway_config(
        sim.url, tmp_path, budgets={"timezone": "Europe/Berlin"}, workflows={"job": {"daily_usd": 0.01}}
    )
    with GatewayServer(raw, clock=clock) as gw:
        for _ in range(5):
            assert httpx.post(f"{gw.url}/w/job/openai/chat/completions", json=CHAT, trust_env=False).status_code == 200
        assert httpx.post(f"{gw.url}/-/pause/job?for=2h", trust_env=False).status_code == 200
        before = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
        spent = sum(r["cost_usd"] for r in gw.records(5))
    clock.advance(3600)
    with GatewayServer(raw, clock=clock) as gw:
        after = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
        assert after["spend_usd"] == before["spend_usd"] and after["spend_usd"]["today"] == pytest.approx(spent)
        job = [b for b in after["budgets"] if b["scope"] == "workflow:job" and b["period"] == "day"]
        assert job[0]["spent_usd"] == pytest.approx(spent, abs=1e-9)
        r = httpx.post(f"{gw.url}/w/job/openai/chat/completions", json=CHAT, trust_env=False)
        assert r.status_code == 429 and r.json()["error"]["code"] == "workflow_paused", "the pause survived"
        assert 3590 <= int(r.headers["retry-after"]) <= 3600
        clock.advance(3601)
        r = httpx.post(f"{gw.url}/w/job/openai/chat/completions", json=CHAT, trust_env=False)
        assert r.status_code == 200, "and expired on time"
        spent += float(r.headers["x-picometer-cost-usd"])
        assert httpx.get(f"{gw.url}/-/status", trust_env=False).json()["pauses"] == []
    clock.advance(14 * 3600)  # past midnight in Berlin: a new day, the same month
    with GatewayServer(raw, clock=clock) as gw:
        spend = httpx.get(f"{gw.url}/-/status", trust_env=False).json()["spend_usd"]
        assert spend["today"] == 0 and spend["month"] == pytest.approx(spent, abs=1e-9)


def test_the_cli_pauses_through_the_daemon_or_its_state_file_when_it_is_down(sim: SimServer, tmp_path: Path) -> None:

    import tomli_w

    from tests.cli import run

    raw = gateway_config(sim.url, tmp_path, server={"listen": f"127.0.0.1:{free_port()}"})
    raw["workflows"] = {"nightly": {}}
    config = tmp_path / "config.toml"
    config.write_text(tomli_w.dumps(raw), encoding="utf-8")
    down = run("pause", "nightly", "--for", "2h", "--config", str(config))
    assert down.returncode == 0 and "not running" in down.stderr
    assert down.stdout.startswith("paused nightly for 2h 00m, until "), "the same words as through the daemon"
    assert run("pause", "nightly", "--for", "banana", "--config", str(config)).returncode == 2
    with GatewayServer(raw) as gw:
        url = f"{gw.url}/w/nightly/openai/chat/completions"
        r = httpx.post(url, json=CHAT, trust_env=False)
        assert r.status_code == 429 and "by cli" in r.json()["error"]["message"]
        up = run("resume", "nightly", "--config", str(config))
        assert up.returncode == 0 and up.stdout.strip() == "resumed nightly" and not up.stderr
        assert httpx.post(url, json=CHAT, trust_env=False).status_code == 200
        again = run("pause", "nightly", "--config", str(config))
        assert again.returncode == 0
        assert again.stdout.strip() == "paused nightly until resumed: its calls get 429 workflow_paused"
        assert httpx.post(url, json=CHAT, trust_env=False).status_code == 429
        status = run("status", "--config", str(config))
        assert "PAUSED nightly until resumed" in status.stdout


def test_a_clock_that_boots_behind_then_jumps_forward_spends_no_more_than_the_cap(
    sim: SimServer, tmp_path: Path
) -> None:
    """A Pi without a real-time clock: a run in the morning, a reboot that comes up the evening before, then NTP
    puts the clock right. The daily cap holds across all three, and no record is counted twice."""
    cap = 0.002
    dear = {"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "water the ferns"}]}
    raw = gateway_config(sim.url, tmp_path, budgets={"timezone": "UTC", "daily_usd": cap})
    morning = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)

    def spend_until_refused(gw: GatewayServer, limit: int = 40) -> int:
        for n in range(limit):
            r = httpx.post(f"{gw.url}/openai/chat/completions", json=dear, trust_env=False)
            if r.status_code == 429:
                return n
            assert r.status_code == 200
        raise AssertionError("the cap never refused")

    clock = ManualClock(morning)
    with GatewayServer(raw, clock=clock) as gw:
        for _ in range(3):
            assert httpx.post(f"{gw.url}/openai/chat/completions", json=dear, trust_env=False).status_code == 200
    clock = ManualClock(morning - timedelta(hours=14))  # reboot: the clock says yesterday evening
    with GatewayServer(raw, clock=clock) as gw:
        spend_until_refused(gw)
        clock.advance(14 * 3600 + 600)  # NTP answers: this morning again, ten minutes later
        assert spend_until_refused(gw) == 0, "the jump forward opened no fresh day"
    records = [record for record, _ in read_records(tmp_path / "logs")]
    ok = [r for r in records if r["status"] == "ok"]
    assert len(ok) > 3
    assert sum(r["cost_usd"] for r in ok) <= cap
    assert all(r["ts"] >= "2026-11-30T10:00" for r in records), "no record is stamped behind the ones before"
    clock.advance(60)
    with GatewayServer(raw, clock=clock) as gw:  # a restart replays the log: every call counted once
        status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    assert status["spend_usd"]["today"] == pytest.approx(sum(r["cost_usd"] for r in ok), abs=1e-12)
