"""What a client may send is bounded: long names, deep JSON and numbers that would shrink a call's worst case
get 400 naming the field, never reach the provider, and leave a record."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from picometer.gateway.bounds import MAX_JSON_DEPTH, too_deep
from tests.servers import GatewayServer, SimServer, daemon_process, gateway_config, rss_mb

CHAT: dict[str, Any] = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "prune the roses"}]}
LONG = "w" * 300


def nested(levels: int) -> Any:
    """`levels` lists, one in another: in a request body (itself one level) that is levels + 1."""
    value: Any = "leaf"
    for _ in range(levels):
        value = [value]
    return value


CASES = [
    # (path, body, headers, words the message must hold)
    ("openai/chat/completions", {**CHAT, "model": LONG}, {}, ["'model'", "256"]),
    ("openai/chat/completions", CHAT, {"x-picometer-workflow": LONG}, ["x-picometer-workflow", "256"]),
    ("openai/chat/completions", CHAT, {"x-picometer-tenant": LONG}, ["x-picometer-tenant"]),
    (f"w/{LONG}/openai/chat/completions", CHAT, {}, ["/w/WORKFLOW/", "256"]),
    ("openai/chat/completions", {**CHAT, "metadata": nested(MAX_JSON_DEPTH)}, {}, ["nests JSON", "64"]),
    ("openai/chat/completions", {**CHAT, "n": "2"}, {}, ["'n'", "whole number"]),
    ("openai/chat/completions", {**CHAT, "n": 0}, {}, ["'n'"]),
    ("openai/chat/completions", {**CHAT, "n": 1000}, {}, ["'n'", "128"]),
    ("openai/chat/completions", {**CHAT, "max_tokens": 1.5}, {}, ["'max_tokens'"]),
    ("openai/chat/completions", {**CHAT, "max_completion_tokens": "100"}, {}, ["'max_completion_tokens'"]),
    ("openai/chat/completions", {**CHAT, "max_tokens": 10**12}, {}, ["'max_tokens'", "10000000"]),
    ("openai/chat/completions", {**CHAT, "temperature": 5}, {}, ["'temperature'"]),
    ("openai/chat/completions", {**CHAT, "temperature": "hot"}, {}, ["'temperature'"]),
    ("openai/responses", {"model": "gpt-4o-mini", "input": "hi", "max_output_tokens": -1}, {}, ["max_output_tokens"]),
    ("anthropic/v1/messages", {**CHAT, "model": "claude-haiku-4-5", "max_tokens": "50"}, {}, ["'max_tokens'"]),
    ("openai/completions", {"model": "gpt-3.5-turbo-instruct", "prompt": "x", "best_of": "3"}, {}, ["'best_of'"]),
]


@pytest.mark.parametrize(("path", "body", "headers", "words"), CASES)
def test_out_of_bounds_requests_get_400_naming_the_field(
    sim: SimServer, gateway: GatewayServer, path: str, body: dict[str, Any], headers: dict[str, str], words: list[str]
) -> None:
    before = sim.sim.requests
    r = httpx.post(f"{gateway.url}/{path}", json=body, headers=headers, trust_env=False, timeout=30)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert (error.get("code") or error["type"]) == "invalid_request_error"
    assert all(w in error["message"] for w in words), error["message"]
    assert sim.sim.requests == before
    [rec] = gateway.records(1)
    assert (rec["status"], rec["error_type"]) == ("blocked", "invalid_request_error")
    assert len(rec["workflow"]) <= 256 and len(rec["model"] or "") <= 256


def test_json_nested_past_what_the_parser_can_hold_is_a_400_not_a_traceback(
    sim: SimServer, gateway: GatewayServer
) -> None:
    deep = b'{"model": "gpt-4o-mini", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    r = httpx.post(f"{gateway.url}/openai/chat/completions", content=deep, trust_env=False, timeout=30)
    assert r.status_code == 400 and "nests JSON" in r.json()["error"]["message"]


def test_within_bounds_passes(gateway: GatewayServer) -> None:
    body = {**CHAT, "n": 2, "max_tokens": 30, "temperature": 0.7, "metadata": nested(MAX_JSON_DEPTH - 1)}
    r = httpx.post(f"{gateway.url}/openai/chat/completions", json=body, trust_env=False, timeout=30)
    assert r.status_code == 200, r.text


def depth_of(obj: Any) -> int:
    if isinstance(obj, dict):
        return 1 + max((depth_of(v) for v in obj.values()), default=0)
    if isinstance(obj, list):
        return 1 + max((depth_of(v) for v in obj), default=0)
    return 0


json_trees = st.recursive(
    st.none() | st.integers() | st.text(max_size=3),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=40,
)


@given(json_trees, st.integers(1, 8))
def test_too_deep_agrees_with_the_recursive_depth(tree: Any, limit: int) -> None:
    assert too_deep(tree, limit) == (depth_of(tree) > limit)


def test_a_9_mb_model_name_is_refused_and_memory_stays_flat(tmp_path: Path) -> None:
    with SimServer() as sim, daemon_process(gateway_config(sim.url, tmp_path), tmp_path) as (url, proc):
        client = httpx.Client(trust_env=False, timeout=60)
        client.post(f"{url}/openai/chat/completions", json=CHAT)  # warm up
        before = rss_mb(proc.pid)
        for _ in range(3):
            r = client.post(f"{url}/openai/chat/completions", content=json.dumps({**CHAT, "model": "m" * 9_000_000}))
            assert r.status_code == 400 and "'model'" in r.json()["error"]["message"]
            assert len(r.content) < 2000, "the name is not echoed back"
        assert rss_mb(proc.pid) - before <= 32
        metrics = client.get(f"{url}/metrics")
        assert len(metrics.content) < 2_000_000 and "mmmmmmmm" not in metrics.text
        log = b"".join(p.read_bytes() for p in (tmp_path / "logs").glob("usage-*.jsonl"))
        assert len(log) < 100_000, "no record holds the name"


def test_50000_distinct_names_leave_memory_flat_and_metrics_small(tmp_path: Path) -> None:
    """Each call names a new workflow and model (refused as unpriced, so the provider is not needed): the
    rollups, the metrics and the watchers fold what they cannot keep, and memory stops growing."""
    import asyncio

    total, warm = 50_000, 10_000

    async def names(url: str, first: int, last: int) -> None:
        limits = httpx.Limits(max_connections=32)
        async with httpx.AsyncClient(trust_env=False, timeout=60, limits=limits) as client:
            queue = iter(range(first, last))

            async def worker() -> None:
                for i in queue:
                    body = {**CHAT, "model": f"model-{i}"}
                    r = await client.post(
                        f"{url}/openai/chat/completions", json=body, headers={"x-picometer-workflow": f"job-{i}"}
                    )
                    assert r.status_code == 400

            await asyncio.gather(*(worker() for _ in range(32)))

    raw = gateway_config("http://127.0.0.1:9", tmp_path, storage={"max_series": 5000})
    with daemon_process(raw, tmp_path) as (url, proc):
        asyncio.run(names(url, 0, warm))
        before = rss_mb(proc.pid)
        asyncio.run(names(url, warm, total))
        grown = rss_mb(proc.pid) - before
        metrics = httpx.get(f"{url}/metrics", trust_env=False, timeout=30)
        status = httpx.get(f"{url}/-/status", trust_env=False, timeout=30).json()
    assert grown <= 16, f"RSS grew {grown:.1f} MB over {total - warm} new names after warm-up"
    assert len(metrics.content) <= 2_000_000 and 'workflow="other"' in metrics.text
    assert status["requests_by_status"]["blocked"] == total


def test_idle_and_slowloris_connections_cannot_crowd_out_a_real_client(tmp_path: Path) -> None:
    """1,000 sockets that never send a thing and 200 that trickle a request head byte by byte: /-/health and a
    real call still answer at once, the daemon holds at most max_connections, and the slow ones are dropped."""
    import socket
    import time

    def fds(pid: int) -> int:
        return len(list(Path(f"/proc/{pid}/fd").iterdir()))

    with SimServer() as sim:
        raw = gateway_config(sim.url, tmp_path, server={"listen": "127.0.0.1:0", "header_timeout_s": 2})
        with daemon_process(raw, tmp_path) as (url, proc):
            host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
            baseline = fds(proc.pid)
            idle = [socket.create_connection((host, port)) for _ in range(1000)]
            slow = [socket.create_connection((host, port)) for _ in range(200)]
            for s in slow:
                s.sendall(b"POST /openai/chat/completions HTTP/1.1\r\nHost: x\r\n")
            client = httpx.Client(trust_env=False, timeout=10)
            for _ in range(3):
                for s in slow:
                    with contextlib.suppress(OSError):
                        s.sendall(b"X")
                started = time.monotonic()
                assert client.get(f"{url}/-/health").status_code == 200
                assert time.monotonic() - started < 1.0
            assert client.post(f"{url}/openai/chat/completions", json=CHAT).status_code == 200
            assert fds(proc.pid) - baseline <= 100 + 10, "no more than max_connections held open"
            time.sleep(2.5)  # past header_timeout_s: whatever never sent a whole head is gone
            assert fds(proc.pid) - baseline <= 10
            for s in idle + slow:
                s.close()
            assert client.get(f"{url}/-/health").status_code == 200


def test_request_bodies_held_at_once_are_bounded(make_gateway: Any) -> None:
    """Three 1.4 MB calls at once against a 3 MB bound: two are served, one gets 503 at once; afterwards
    nothing is held and a call passes again."""
    import asyncio

    gw = make_gateway(
        server={"listen": "127.0.0.1:0", "max_body_bytes": 2_000_000, "max_body_bytes_in_flight": 3_000_000}
    )
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 1_400_000}]}

    async def three() -> list[int]:
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            url, slow = f"{gw.url}/openai/chat/completions", {"x-sim-latency-ms": "1000"}
            first = [asyncio.create_task(client.post(url, json=big, headers=slow)) for _ in range(2)]
            await asyncio.sleep(0.4)  # both are with the provider now
            third = await client.post(url, json=big)
            return [r.status_code for r in await asyncio.gather(*first)] + [third.status_code]

    codes = asyncio.run(three())
    assert codes == [200, 200, 503], codes
    gw.settle()  # a call gives its bytes back as it ends, just after its reply: the client may read first
    assert gw.daemon.gateway.admission.body_bytes_held == 0
    refused = [rec for rec in gw.records(3) if rec["status"] == "blocked"]
    assert [(rec["error_type"], rec["http_status"]) for rec in refused] == [("overloaded", 503)]
    assert httpx.post(f"{gw.url}/openai/chat/completions", json=big, trust_env=False, timeout=30).status_code == 200
