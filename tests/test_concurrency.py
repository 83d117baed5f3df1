"""Many clients at once: every stream arrives whole and gets its own, correct record."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx

from picometer.simulated_answers import sim_tokens
from picometer.simulator import SimSettings
from tests.servers import GatewayServer, SimServer, gateway_config

CLIENTS = 100


async def one_client(client: httpx.AsyncClient, url: str, i: int) -> dict[str, object]:
    ask_usage = i % 2 == 0
    body: dict[str, object] = {
        "model": "gpt-4o-mini",
        "stream": True,
        "messages": [{"role": "user", "content": " ".join(f"word{i}" for _ in range(i + 1))}],
    }
    if ask_usage:
        body["stream_options"] = {"include_usage": True}
    text, usage = "", None
    async with client.stream("POST", url, json=body, headers={"x-request-id": f"client-{i}"}) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                chunk = json.loads(line[6:])
                if chunk["choices"]:
                    text += chunk["choices"][0]["delta"].get("content") or ""
                if chunk.get("usage"):
                    usage = chunk["usage"]
    return {"i": i, "ask_usage": ask_usage, "text": text, "usage": usage}


async def run_clients(url: str) -> list[dict[str, object]]:
    limits = httpx.Limits(max_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=60, trust_env=False) as client:
        return await asyncio.gather(*(one_client(client, url, i) for i in range(CLIENTS)))


def test_100_concurrent_streams_each_get_their_own_correct_record(tmp_path: Path) -> None:
    # more streams at once than the default [server].max_in_flight (64) would serve
    with (
        SimServer(SimSettings(chunk_delay_s=0.01)) as sim,
        GatewayServer(
            gateway_config(
                sim.url,
                tmp_path,
                server={"listen": "127.0.0.1:0", "max_in_flight": CLIENTS, "max_connections": 2 * CLIENTS},
            )
        ) as gw,
    ):
        results = asyncio.run(run_clients(f"{gw.url}/openai/chat/completions"))
        records = {r["correlation_id"]: r for r in gw.records(CLIENTS)}
        assert gw.daemon.gateway.in_flight == 0
    assert len(records) == CLIENTS
    for res in results:
        rec = records[f"client-{res['i']}"]
        assert rec["status"] == "ok" and rec["usage_source"] == "provider"
        assert rec["output_tokens"] == sim_tokens(str(res["text"])), "tokens of this client's own answer"
        if res["ask_usage"]:
            usage = res["usage"]
            assert isinstance(usage, dict)
            assert rec["input_tokens"] == usage["prompt_tokens"] and rec["output_tokens"] == usage["completion_tokens"]
        else:
            assert res["usage"] is None, "the usage chunk picometer asked for stays hidden"
    inputs = [records[f"client-{i}"]["input_tokens"] for i in range(CLIENTS)]
    assert inputs == sorted(inputs) and len(set(inputs)) > CLIENTS // 2, "longer prompts, more input tokens"
    assert len({r["request_id"] for r in records.values()}) == CLIENTS
