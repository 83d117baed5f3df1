"""The response cache with the real daemon and the official SDKs: a repeat without randomness is answered
once upstream, the second time from the cache with its saving; never across workflows or keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.clocks import ManualClock
from tests.sdks import ant, oa
from tests.servers import Gateways, SimServer

ASK = [{"role": "user", "content": "How deep do I sow carrots?"}]


@pytest.fixture
def gateways(sim: SimServer, tmp_path: Path) -> Iterator[Gateways]:
    keys = {"garden": {"keys": ["pm-garden-key-0001"]}, "kitchen": {"keys": ["pm-kitchen-key-001"]}}
    providers = {
        "openai": {"kind": "openai", "base_url": f"{sim.url}/v1", "api_key": "env:OPENAI_KEY"},
        "anthropic": {"kind": "anthropic", "base_url": sim.url},
    }
    with Gateways(sim.url, tmp_path, cache={"enabled": True, "ttl_s": 600}, workflows=keys, providers=providers) as g:
        yield g


ENV = {"OPENAI_KEY": "sk-real"}


def test_the_same_temperature_0_call_is_bought_once_and_the_repeat_is_free(gateways: Gateways, sim: SimServer) -> None:
    gw = gateways(env=ENV)
    client = oa(f"{gw.url}/openai")
    first = client.chat.completions.create(model="gpt-4o-mini", messages=ASK, temperature=0, max_tokens=40)
    again = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ASK, temperature=0, max_tokens=40
    )
    assert again.headers["x-picometer-cache"] == "hit" and again.headers["x-picometer-cost-usd"] == "0"
    assert again.parse().choices[0].message.content == first.choices[0].message.content
    assert sim.sim.requests == 1
    bought, hit = gw.records(2)
    assert (bought["cache_hit"], hit["cache_hit"]) == (False, True)
    assert hit["cost_usd"] == 0 and bought["cost_usd"] > 0
    assert hit["cost_saved_usd"] == pytest.approx(bought["cost_usd"])
    assert hit["status"] == "ok" and hit["http_status"] == 200
    metrics = httpx.get(f"{gw.url}/metrics", trust_env=False).text
    assert 'picometer_cache_hits_total{workflow="untagged"} 1.0' in metrics


def test_a_stream_replays_as_a_stream_and_anthropic_too(gateways: Gateways, sim: SimServer) -> None:
    gw = gateways(env=ENV)
    client = oa(f"{gw.url}/openai")
    texts = []
    for _ in range(2):
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, temperature=0, stream=True, stream_options={"include_usage": True}
        )
        chunks = list(stream)
        texts.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))
        assert chunks[-1].usage is not None
    assert texts[0] == texts[1] and texts[0]
    messages = [ant(f"{gw.url}/anthropic").messages.create(
        model="claude-haiku-4-5", max_tokens=50, messages=ASK, extra_body={"temperature": 0}
    ) for _ in range(2)]  # fmt: skip
    assert messages[0].content == messages[1].content
    assert sim.sim.requests == 2
    records = gw.records(4)
    assert [r["cache_hit"] for r in records] == [False, True, False, True]
    assert records[1]["stream"] is True


def test_randomness_workflows_and_keys_are_never_shared(gateways: Gateways, sim: SimServer) -> None:
    gw = gateways(env=ENV)
    client = oa(f"{gw.url}/openai")
    for _ in range(2):
        client.chat.completions.create(model="gpt-4o-mini", messages=ASK, temperature=1, max_tokens=20)
    assert sim.sim.requests == 2, "a sampled answer is never cached"
    garden = oa(f"{gw.url}/openai")
    garden.api_key = "pm-garden-key-0001"
    kitchen = oa(f"{gw.url}/openai")
    kitchen.api_key = "pm-kitchen-key-001"
    for c in (garden, kitchen, garden):
        c.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=7, max_tokens=20)
    assert sim.sim.requests == 4, "one call per workflow; the second garden call is the hit"
    records = gw.records(5)
    assert [(r["workflow"], r["cache_hit"]) for r in records[2:]] == [
        ("garden", False),
        ("kitchen", False),
        ("garden", True),
    ]


def test_entries_expire_on_time(sim: SimServer, tmp_path: Path) -> None:
    clock = ManualClock()
    with Gateways(sim.url, tmp_path, cache={"enabled": True, "ttl_s": 60}) as make:
        gw = make(clock=clock)
        client = oa(f"{gw.url}/openai")
        ask = {"model": "gpt-4o-mini", "messages": ASK, "temperature": 0, "max_tokens": 20}
        client.chat.completions.create(**ask)
        clock.advance(59)
        client.chat.completions.create(**ask)
        clock.advance(2)
        client.chat.completions.create(**ask)
        assert [r["cache_hit"] for r in gw.records(3)] == [False, True, False]
        assert sim.sim.requests == 2
