"""A provider having a bad hour: for each fault, what the client gets, how often the provider was called,
and exactly one record per client request."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli import run
from tests.clocks import ManualClock
from tests.servers import GatewayServer, SimServer, broken_stream, free_port

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "summarize the incident"}]}
FAST_RETRIES = {"max_attempts": 3, "base_delay_s": 0.01, "max_delay_s": 5}


@pytest.fixture
def chaos(sim: SimServer, make_gateway: Callable[..., GatewayServer]) -> Callable[..., GatewayServer]:
    """A gateway in front of the simulator with quick retries; options override [retry] and the provider."""

    def make(retry: dict[str, Any] | None = None, clock: ManualClock | None = None, **provider: Any) -> GatewayServer:
        openai = {"kind": "openai", "base_url": f"{sim.url}/v1", **provider}
        return make_gateway(clock=clock, retry={**FAST_RETRIES, **(retry or {})}, providers={"openai": openai})

    return make


def call(
    gw: GatewayServer, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
) -> httpx.Response:
    return httpx.post(
        f"{gw.url}/openai/chat/completions", json=body or CHAT, headers=headers or {}, trust_env=False, timeout=30
    )


def burst(gw: GatewayServer, n: int, latency_ms: int) -> list[httpx.Response]:
    """`n` calls at once, each taking the simulator `latency_ms` to answer."""

    async def calls() -> list[httpx.Response]:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            url, headers = f"{gw.url}/openai/chat/completions", {"x-sim-latency-ms": str(latency_ms)}
            return await asyncio.gather(*(client.post(url, json=CHAT, headers=headers) for _ in range(n)))

    return asyncio.run(calls())


def only_record(gw: GatewayServer) -> dict[str, Any]:
    records = gw.records(1)
    time.sleep(0.05)
    assert len(gw.records(0)) == 1, "exactly one record per client request"
    return records[0]


@pytest.mark.parametrize(
    ("status", "error_type"),
    [(500, "server_error"), (502, "server_error"), (503, "server_error"), (504, "timeout"), (529, "overloaded")],
)
def test_a_failing_provider_is_tried_max_attempts_times_then_its_answer_relayed(
    chaos: Callable[..., GatewayServer], sim: SimServer, status: int, error_type: str
) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": f"http{status}"})
    assert r.status_code == status and r.json()["error"]["message"] == f"simulated {status}"
    assert sim.sim.requests == 3
    rec = only_record(gw)
    assert rec["status"] == "error" and rec["error_type"] == error_type and rec["attempts"] == 3
    assert rec["http_status"] == status and rec["cost_usd"] == 0.0
    upstream = httpx.get(f"{gw.url}/-/status", trust_env=False).json()["upstream"]["openai"]
    assert upstream["retries"] == {error_type: 2}


def test_first_failures_then_success_is_one_ok_record_with_its_attempts(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": "http503", "x-sim-fail-first": "2", "x-sim-id": "a"})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
    assert sim.sim.requests == 3
    rec = only_record(gw)
    assert rec["status"] == "ok" and rec["attempts"] == 3 and rec["error_type"] is None
    assert rec["cost_usd"] > 0 and r.headers["x-picometer-cost-usd"] != "0"


def test_429_with_retry_after_waits_as_asked_then_succeeds(chaos: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = chaos()
    t0 = time.monotonic()
    r = call(gw, {"x-sim-fault": "http429", "x-sim-retry-after": "1", "x-sim-fail-first": "1", "x-sim-id": "b"})
    assert r.status_code == 200 and time.monotonic() - t0 >= 1.0, "Retry-After: 1 honoured"
    assert sim.sim.requests == 2
    rec = only_record(gw)
    assert rec["status"] == "ok" and rec["attempts"] == 2


def test_429_with_an_http_date_retry_after_is_honoured(chaos: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = chaos()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=2), usegmt=True)
    t0 = time.monotonic()
    r = call(gw, {"x-sim-fault": "http429", "x-sim-retry-after": when, "x-sim-fail-first": "1", "x-sim-id": "c"})
    assert r.status_code == 200 and time.monotonic() - t0 >= 0.9, "waited until (about) the date given"
    assert sim.sim.requests == 2 and only_record(gw)["attempts"] == 2


def test_429_without_retry_after_backs_off_and_gives_up_after_max_attempts(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": "http429", "x-sim-retry-after": "none"})
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert sim.sim.requests == 3
    rec = only_record(gw)
    assert rec["error_type"] == "rate_limited" and rec["attempts"] == 3


def test_a_retry_after_longer_than_max_delay_goes_back_to_the_client_at_once(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos()
    t0 = time.monotonic()
    r = call(gw, {"x-sim-fault": "http429", "x-sim-retry-after": "120"})
    assert r.status_code == 429 and r.headers["retry-after"] == "120", "the client learns when to come back"
    assert time.monotonic() - t0 < 5 and sim.sim.requests == 1
    assert only_record(gw)["attempts"] == 1


def test_insufficient_quota_is_not_retried(chaos: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": "quota"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert sim.sim.requests == 1, "no wait cures an empty account"
    rec = only_record(gw)
    assert rec["error_type"] == "quota_exceeded" and rec["attempts"] == 1


def test_payment_required_is_quota_exceeded_and_not_retried(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": "http402"})
    assert r.status_code == 402 and r.json()["error"]["message"] == "simulated 402", "the provider's own answer"
    assert sim.sim.requests == 1
    rec = only_record(gw)
    assert (rec["status"], rec["http_status"], rec["error_type"], rec["attempts"]) == (
        "error",
        402,
        "quota_exceeded",
        1,
    )
    assert rec["cost_usd"] == 0


def test_a_first_byte_slower_than_the_timeout_is_504_and_not_retried(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos(first_byte_timeout_s=0.3)
    r = call(gw, {"x-sim-latency-ms": "2000"})
    assert r.status_code == 504
    error = r.json()["error"]
    assert error["code"] == "upstream_timeout" and "first_byte_timeout_s = 0.3 s" in error["message"]
    assert sim.sim.requests == 1, "it may have done the work: a retry could bill twice"
    rec = only_record(gw)
    assert rec["status"] == "error" and rec["error_type"] == "timeout" and rec["attempts"] == 1


def test_a_stream_that_stalls_midway_is_cut_after_the_idle_timeout(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    gw = chaos(timeout_s=0.5)
    t0 = time.monotonic()
    got = broken_stream(f"{gw.url}/openai/chat/completions", {**CHAT, "stream": True}, {"x-sim-fault": "stall"})
    assert b"data:" in got and b"[DONE]" not in got, "the client saw the start, and a broken end"
    assert time.monotonic() - t0 < 10
    assert sim.sim.requests == 1, "bytes were relayed: never retried"
    rec = only_record(gw)
    assert rec["status"] == "error" and rec["error_type"] == "timeout" and rec["attempts"] == 1
    assert rec["usage_source"] == "estimated" and rec["output_tokens"] > 0


@pytest.mark.parametrize("total", [0.02, 0.4])  # shorter than the hang-up watch's start, and longer
def test_a_call_past_total_timeout_is_a_504_and_a_stream_past_it_is_cut(
    chaos: Callable[..., GatewayServer], sim: SimServer, total: float
) -> None:
    gw = chaos(total_timeout_s=total)
    r = call(gw, {"x-sim-latency-ms": "3000"})
    assert r.status_code == 504
    error = r.json()["error"]
    assert error["code"] == "upstream_timeout" and f"total_timeout_s = {total:g} s" in error["message"]
    rec = only_record(gw)
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("error", "timeout", 504)
    if total > 0.1:  # time enough for the stream's first events to reach the client
        got = broken_stream(f"{gw.url}/openai/chat/completions", {**CHAT, "stream": True}, {"x-sim-fault": "stall"})
        assert b"data:" in got and b"[DONE]" not in got, "the stream under way is cut off, as the provider's would be"
        cut = gw.records(2)[1]
        assert (cut["status"], cut["error_type"], cut["http_status"]) == ("error", "timeout", 200)
        assert call(gw).status_code == 200, "a call in time still passes"
        assert sim.sim.requests == 3, "a timeout is never retried"


def test_a_connection_reset_midstream_is_not_retried(chaos: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = chaos()
    got = broken_stream(f"{gw.url}/openai/chat/completions", {**CHAT, "stream": True}, {"x-sim-fault": "cut"})
    assert b"data:" in got, "the client's stream breaks as the provider's did"
    assert sim.sim.requests == 1
    rec = only_record(gw)
    assert rec["status"] == "error" and rec["error_type"] == "stream_interrupted" and rec["attempts"] == 1
    assert rec["usage_source"] == "estimated" and rec["output_tokens"] > 0


def test_a_garbage_body_is_a_clear_502_and_not_retried(chaos: Callable[..., GatewayServer], sim: SimServer) -> None:
    gw = chaos()
    r = call(gw, {"x-sim-fault": "html"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_bad_response"
    assert sim.sim.requests == 1
    rec = only_record(gw)
    assert rec["error_type"] == "bad_response" and rec["attempts"] == 1


def test_an_unresolvable_host_is_retried_then_a_502_that_says_dns(chaos: Callable[..., GatewayServer]) -> None:
    gw = chaos(base_url="http://picometer-test.invalid/v1")
    r = call(gw)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "upstream_unavailable"
    assert "(picometer-test.invalid) does not resolve" in error["message"] and "after 3 attempts" in error["message"]
    rec = only_record(gw)
    assert rec["error_type"] == "dns_error" and rec["attempts"] == 3 and rec["usage_source"] == "none"


def test_a_refused_port_is_retried_then_502_and_the_circuit_opens(
    chaos: Callable[..., GatewayServer], tmp_path: Path
) -> None:
    gw = chaos(retry={"circuit_failures": 3, "circuit_open_s": 60}, base_url=f"http://127.0.0.1:{free_port()}/v1")
    r = call(gw)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_unavailable"
    assert "is unreachable" in r.json()["error"]["message"]
    first = only_record(gw)
    assert first["status"] == "error" and first["error_type"] == "connect_error" and first["attempts"] == 3
    assert first["usage_source"] == "none", "nothing reached the provider: nothing to estimate"

    r2 = call(gw)  # three failures in a row: the circuit is open, picometer fails fast
    assert r2.status_code == 503 and r2.json()["error"]["code"] == "upstream_unavailable"
    assert "failed 3 times in a row" in r2.json()["error"]["message"]
    assert 0 < int(r2.headers["retry-after"]) <= 60
    second = gw.records(2)[1]
    assert second["status"] == "error" and second["error_type"] == "circuit_open" and second["attempts"] == 0
    status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()["upstream"]["openai"]
    assert status["circuit"] == "open" and status["consecutive_failures"] == 3
    cfg = tmp_path / "status.toml"
    cfg.write_text(f'[server]\nlisten = "127.0.0.1:{gw.url.rsplit(":", 1)[1]}"\n')
    shown = run("status", "--config", str(cfg)).stdout
    assert "provider openai: CIRCUIT OPEN, 3 failures in a row, retries: connect_error 2" in shown


def test_after_the_open_time_one_trial_call_closes_the_circuit(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    clock = ManualClock(datetime.now(UTC))
    gw = chaos(retry={"circuit_failures": 2, "circuit_open_s": 30, "max_attempts": 1}, clock=clock)
    for _ in range(2):
        assert call(gw, {"x-sim-fault": "http500"}).status_code == 500
    assert call(gw).status_code == 503, "open: not even a healthy provider is called"
    assert sim.sim.requests == 2
    clock.advance(31)
    assert call(gw).status_code == 200, "the trial call goes through and succeeds"
    assert call(gw).status_code == 200 and sim.sim.requests == 4
    assert httpx.get(f"{gw.url}/-/status", trust_env=False).json()["upstream"]["openai"]["circuit"] == "closed"


def test_a_minute_of_total_outage_adds_at_most_budget_ratio_in_retries(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    """Every call fails for a (simulated) minute; without a retry budget each would be tried 5 times."""
    clock = ManualClock(datetime.now(UTC))
    ratio, floor = 0.2, 20
    gw = chaos(
        retry={
            "max_attempts": 5,
            "base_delay_s": 0.001,
            "max_delay_s": 0.002,
            "budget_ratio": ratio,
            "min_retries_per_minute": floor,
            "circuit_failures": 0,
        },
        clock=clock,
    )

    async def wave(client: httpx.AsyncClient) -> list[int]:
        rs = await asyncio.gather(
            *(
                client.post(f"{gw.url}/openai/chat/completions", json=CHAT, headers={"x-sim-fault": "http503"})
                for _ in range(10)
            )
        )
        return [r.status_code for r in rs]

    async def outage() -> int:
        sent = 0
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            for _ in range(60):
                statuses = await wave(client)
                assert statuses == [503] * 10, "each client gets the provider's answer, quickly"
                sent += len(statuses)
                clock.advance(1.0)
        return sent

    requests = asyncio.run(outage())
    upstream = sim.sim.requests
    # the rolling minute spans two windows over the run: the floor twice at most
    assert upstream <= requests * (1 + ratio) + 2 * floor, f"{upstream} upstream calls for {requests} requests"
    assert upstream > requests, "retries were made while the budget allowed"
    records = gw.records(requests)
    assert len(records) == requests and sum(r["attempts"] for r in records) == upstream


def test_a_quiet_providers_rare_failures_all_get_their_retries(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    """Four calls in a minute, each failing twice with 529 before it succeeds: every one gets all 3 attempts
    (the retry budget's floor, [retry].min_retries_per_minute, is for exactly this)."""
    gw = chaos()
    for i in range(4):
        r = call(
            gw,
            {"x-sim-fault": "http529", "x-sim-fail-first": "2", "x-sim-id": f"quiet-{i}", "x-sim-retry-after": "none"},
        )
        assert r.status_code == 200, f"call {i + 1}: {r.text}"
    records = gw.records(4)
    assert [rec["attempts"] for rec in records] == [3, 3, 3, 3]
    assert [rec["status"] for rec in records] == ["ok"] * 4


def test_a_full_local_pool_is_overloaded_not_a_provider_outage(
    chaos: Callable[..., GatewayServer], sim: SimServer
) -> None:
    from picometer.gateway.pool import new_transport

    gw = chaos(connect_timeout_s=0.3)
    gw.daemon.gateway.upstream._transport = new_transport(max_connections=2)

    answers = burst(gw, 8, latency_ms=1500)
    codes = sorted(r.status_code for r in answers)
    assert codes.count(200) == 2 and codes.count(503) == 6, codes
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded" and "all busy" in refused.json()["error"]["message"]
    health = httpx.get(f"{gw.url}/-/status", trust_env=False).json()["upstream"]["openai"]
    assert health["circuit"] == "closed" and health["consecutive_failures"] == 0
    overloaded = [rec for rec in gw.records(8) if rec["error_type"] == "overloaded"]
    assert len(overloaded) == 6 and all(rec["status"] == "error" for rec in overloaded)


def test_more_calls_than_max_in_flight_get_503_with_retry_after(make_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_gateway(server={"listen": "127.0.0.1:0", "max_in_flight": 2})

    answers = burst(gw, 5, latency_ms=800)
    assert sorted(r.status_code for r in answers) == [200, 200, 503, 503, 503]
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "overloaded"
    records = gw.records(5)
    assert sorted(rec["status"] for rec in records) == ["blocked", "blocked", "blocked", "ok", "ok"]
