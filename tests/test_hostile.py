"""One provider answer cannot take the Pi down: the real daemon in a subprocess against a provider that sends
endless JSON, a gzip bomb, SSE without blank lines or without any newline, and absurd usage numbers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hostile import HostileServer
from tests.servers import SimServer, cpu_s, daemon_process, gateway_config, reset_peak_rss, rss_mb

CHAT = {"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "count the bees"}]}
RSS_GROWTH_MB = 64


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    tmp = tmp_path_factory.mktemp("hostile")
    with SimServer() as sim, HostileServer() as evil:
        raw: dict[str, Any] = gateway_config(sim.url, tmp, budgets={"daily_usd": 1})
        raw["providers"]["evil"] = {"kind": "openai", "base_url": f"{evil.url}/v1", "max_response_bytes": 20_000_000}
        with daemon_process(raw, tmp) as (url, proc):
            yield url, proc.pid, tmp


def records(tmp: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted((tmp / "logs").glob("usage-*.jsonl")) for line in f.open()]


def status(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/-/status", trust_env=False, timeout=30).json()  # type: ignore[no-any-return]


@pytest.mark.parametrize("kind", ["huge_json", "gzip_bomb", "sse_no_blank", "sse_no_newline"])
def test_a_hostile_body_gets_502_with_memory_bounded_and_the_cpu_idle_after(
    setup: tuple[str, int, Path], kind: str
) -> None:
    url, pid, tmp = setup
    before = rss_mb(pid)
    body = {**CHAT, "stream": kind.startswith("sse")}
    r = httpx.post(f"{url}/evil/chat/completions", json=body, headers={"x-hostile": kind}, trust_env=False, timeout=120)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_bad_response", r.text[:300]
    [rec] = [rec for rec in records(tmp) if rec["request_id"] == r.headers["x-picometer-request-id"]]
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("error", "bad_response", 502)
    assert rec["usage_source"] == "estimated" and rec["input_tokens"] > 0, "the provider may have billed it"
    assert rss_mb(pid) - before <= RSS_GROWTH_MB
    spent = cpu_s(pid)
    time.sleep(1.0)
    assert cpu_s(pid) - spent < 0.3, "the daemon is still busy after the answer"
    assert status(url)["requests_by_status"]["error"] >= 1


def test_many_big_answers_at_once_are_passed_on_whole_with_memory_bounded(setup: tuple[str, int, Path]) -> None:
    """Twelve 8 MB answers at once would hold about 200 MB if each were read whole; past
    [server].max_answer_bytes_in_flight (16 MB) they are passed on as they arrive and metered from their tail."""
    url, pid, tmp = setup
    before = rss_mb(pid)
    reset_peak_rss(pid)

    async def call(client: httpx.AsyncClient) -> httpx.Response:
        return await client.post(f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "big_answer"})

    async def all_at_once() -> list[httpx.Response]:
        async with httpx.AsyncClient(trust_env=False, timeout=120) as client:
            return await asyncio.gather(*(call(client) for _ in range(12)))

    answers = asyncio.run(all_at_once())
    assert rss_mb(pid, "VmHWM") - before <= RSS_GROWTH_MB, "the peak, not only what is left after"
    for a in answers:  # each client got the whole answer, byte for byte valid JSON
        assert a.status_code == 200 and a.json()["usage"]["completion_tokens"] == 20
    ids = {a.headers["x-picometer-request-id"] for a in answers}
    mine = [rec for rec in records(tmp) if rec["request_id"] in ids]
    assert len(mine) == 12
    for rec in mine:  # every one metered from the provider's own usage, whether held or passed on
        assert (rec["status"], rec["usage_source"], rec["input_tokens"], rec["output_tokens"]) == (
            "ok",
            "provider",
            12,
            20,
        )
    passed_on = [a for a in answers if "x-picometer-cost-usd" not in a.headers]
    assert passed_on, "some answers went past the bound and were passed on as they arrived"


def test_absurd_usage_is_recorded_within_bounds_and_releases_its_hold(setup: tuple[str, int, Path]) -> None:
    url, _, tmp = setup
    r = httpx.post(
        f"{url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "absurd_usage"}, trust_env=False, timeout=30
    )
    assert r.status_code == 200
    request_id = r.headers["x-picometer-request-id"]
    # 1e400 input tokens is no number; 10**30 output tokens is more than max_tokens allows: held to 20
    cost = float(r.headers["x-picometer-cost-usd"])
    assert cost == pytest.approx(20 * 0.60 / 1e6)
    [rec] = [rec for rec in records(tmp) if rec["request_id"] == request_id]
    assert (rec["input_tokens"], rec["output_tokens"], rec["usage_source"]) == (0, 20, "provider")


def test_after_every_hostile_answer_no_hold_is_left_and_calls_still_pass(setup: tuple[str, int, Path]) -> None:
    url, _, _ = setup
    day = next(b for b in status(url)["budgets"] if b["scope"] == "global" and b["period"] == "day")
    assert day["reserved_usd"] == 0, "a hostile answer leaked its budget hold"
    ok = httpx.post(f"{url}/openai/chat/completions", json=CHAT, trust_env=False, timeout=30)
    assert ok.status_code == 200


def test_interim_answers_do_not_stretch_the_first_byte_wait(make_gateway: Any) -> None:
    """A provider sending 102 Processing every 0.2 s sends bytes, but no answer: first_byte_timeout_s still ends
    the wait, counted from when the request went out, not from its last byte."""
    with HostileServer() as evil:
        evil_provider = {"kind": "openai", "base_url": f"{evil.url}/v1", "first_byte_timeout_s": 0.5}
        gw = make_gateway(providers={"evil": evil_provider})
        started = time.monotonic()
        r = httpx.post(
            f"{gw.url}/evil/chat/completions", json=CHAT, headers={"x-hostile": "slow_1xx"}, trust_env=False, timeout=30
        )
        waited = time.monotonic() - started
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert waited < 2.5, "cut off at first_byte_timeout_s, not after the provider's 3 s of interim answers"
    rec = gw.records(1)[0]
    assert (rec["status"], rec["error_type"], rec["attempts"]) == ("error", "timeout", 1)
