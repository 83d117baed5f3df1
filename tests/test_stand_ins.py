"""When money or a provider runs out: a cheaper model past a cap (downgrade), another provider when the first
fails (fallback), with the real daemon and the official SDKs, and one record per client call saying so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.replay import ReplayServer
from tests.sdks import ant, oa
from tests.servers import Gateways, SimServer

ASK = [{"role": "user", "content": "Which seeds need light to sprout?"}]
KEYS = {"OPENAI_KEY": "sk-real-openai", "ANTHROPIC_KEY": "sk-ant-real"}


@pytest.fixture
def broken() -> Iterator[ReplayServer]:
    """A provider that answers whatever the test queues (and 500 once the queue is empty)."""
    with ReplayServer() as server:
        yield server


def providers(sim: SimServer, broken: ReplayServer) -> dict[str, Any]:
    return {
        "openai": {"kind": "openai", "base_url": f"{sim.url}/v1", "api_key": "env:OPENAI_KEY"},
        "anthropic": {"kind": "anthropic", "base_url": sim.url, "api_key": "env:ANTHROPIC_KEY"},
        "flaky": {
            "kind": "openai",
            "base_url": f"{broken.url}/v1",
            "api_key": "env:OPENAI_KEY",
            "fallback": ["anthropic/claude-haiku-4-5"],
        },
        "shaky": {
            "kind": "anthropic",
            "base_url": broken.url,
            "api_key": "env:ANTHROPIC_KEY",
            "fallback": ["openai/gpt-4o-mini"],
        },
    }


@pytest.fixture
def gateways(sim: SimServer, broken: ReplayServer, tmp_path: Path) -> Iterator[Gateways]:
    with Gateways(
        sim.url, tmp_path, providers=providers(sim, broken), retry={"max_attempts": 2, "base_delay_s": 0.01}
    ) as make:
        yield make


def queue(server: ReplayServer, status: int, body: dict[str, Any], times: int = 4) -> None:
    for _ in range(times):
        server.answer_json(body, status)


DOWN = {"error": {"type": "server_error", "message": "The server is overloaded"}}


def test_a_provider_failing_503_is_replaced_by_its_fallback_stream_and_not(
    gateways: Gateways, broken: ReplayServer, sim: SimServer
) -> None:
    gw = gateways(env=KEYS)
    queue(broken, 503, DOWN, times=8)
    client = oa(f"{gw.url}/flaky")
    answer = client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=50)
    assert answer.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=ASK, max_tokens=50, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    whole, streamed = gw.records(2)
    for rec in (whole, streamed):
        assert (rec["status"], rec["provider"], rec["model"]) == ("ok", "anthropic", "claude-haiku-4-5")
        assert (rec["fallback_from"], rec["fallback_reason"]) == ("flaky/gpt-4o-mini", "server_error")
        assert rec["output_tokens"] > 0 and rec["cost_usd"] > 0 and rec["usage_source"] == "provider"
        assert rec["attempts"] == 3, "two tries at the provider asked, one at the fallback"
    assert streamed["stream"] is True
    assert len(broken.requests) == 4, "the broken provider was tried max_attempts times per call"
    assert all(r.headers["authorization"] == "Bearer sk-real-openai" for r in broken.requests)


def test_quota_gone_falls_back_but_a_bad_request_does_not(gateways: Gateways, broken: ReplayServer) -> None:
    gw = gateways(env=KEYS)
    quota = {"error": {"type": "insufficient_quota", "code": "insufficient_quota", "message": "You exceeded..."}}
    broken.answer_json(quota, 429)
    client = oa(f"{gw.url}/flaky")
    assert client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=20).choices
    bad = {"error": {"type": "invalid_request_error", "message": "'messages' is too short"}}
    broken.answer_json(bad, 400)
    with pytest.raises(openai.BadRequestError, match="too short"):
        client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=20)
    fell, failed = gw.records(2)
    assert (fell["provider"], fell["fallback_reason"], fell["status"]) == ("anthropic", "quota_exceeded", "ok")
    assert (failed["provider"], failed["fallback_from"], failed["status"]) == ("flaky", None, "error")
    assert failed["http_status"] == 400


def test_an_anthropic_client_gets_its_own_api_from_an_openai_fallback(gateways: Gateways, broken: ReplayServer) -> None:
    gw = gateways(env=KEYS)
    queue(broken, 529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, times=4)
    client = ant(f"{gw.url}/shaky")
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=60, messages=ASK)
    assert message.content[0].type == "text" and message.content[0].text
    assert message.usage.output_tokens > 0 and message.stop_reason in ("end_turn", "max_tokens")
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=60, messages=ASK) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.usage.output_tokens > 0
    whole, streamed = gw.records(2)
    for rec in (whole, streamed):
        assert (rec["status"], rec["provider"], rec["model"], rec["endpoint"]) == (
            "ok",
            "openai",
            "gpt-4o-mini",
            "chat/completions",
        )
        assert (rec["fallback_from"], rec["fallback_reason"]) == ("shaky/claude-sonnet-4-6", "overloaded")
        assert rec["output_tokens"] == (message.usage.output_tokens if rec is whole else final.usage.output_tokens)


def test_when_every_fallback_fails_too_the_client_gets_its_providers_answer(
    gateways: Gateways, broken: ReplayServer, sim: SimServer
) -> None:
    dead = {"kind": "anthropic", "base_url": "http://127.0.0.1:9", "api_key": "env:ANTHROPIC_KEY"}
    gw = gateways(env=KEYS, providers={**providers(sim, broken), "anthropic": dead})
    queue(broken, 503, DOWN, times=2)
    with pytest.raises(openai.InternalServerError):
        oa(f"{gw.url}/flaky").chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=20)
    [rec] = gw.records(1)
    assert (rec["status"], rec["provider"], rec["fallback_from"], rec["http_status"]) == ("error", "flaky", None, 503)


def test_past_a_workflow_cap_calls_go_to_the_cheaper_model_then_are_refused(gateways: Gateways, sim: SimServer) -> None:
    cap = {"daily_usd": 0.002, "on_exceed": "downgrade", "downgrade_to": "openai/gpt-4o-mini"}
    gw = gateways(env=KEYS, workflows={"digest": cap})
    client = oa(f"{gw.url}/w/digest/openai")
    models: list[str] = []
    for _ in range(400):
        try:
            answer = client.chat.completions.create(model="gpt-4o", messages=ASK, max_tokens=200)
        except openai.RateLimitError as e:
            assert e.code == "budget_exceeded"
            break
        models.append(answer.model)
    else:
        pytest.fail("the cap never refused")
    records = gw.records(len(models) + 1)
    downgraded = [r for r in records if r["downgraded_from"]]
    assert downgraded and all(r["model"] == "gpt-4o-mini" for r in downgraded)
    assert {r["downgraded_from"] for r in downgraded} == {"openai/gpt-4o"}
    assert records[-1]["status"] == "blocked" and records[-1]["error_type"] == "budget_exceeded"
    spent = sum(r["cost_usd"] for r in records)
    assert spent <= 0.002
    status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    kinds = [a["kind"] for a in status["alerts"]]
    assert kinds.count("budget_downgrade") == 1, "told once per cap and period"
    assert "budget_blocked" in kinds


def test_an_anthropic_call_downgraded_to_openai_is_answered_in_anthropics_api(gateways: Gateways) -> None:
    cap = {"daily_usd": 0.001, "on_exceed": "downgrade", "downgrade_to": "openai/gpt-4o-mini"}
    gw = gateways(env=KEYS, workflows={"notes": cap})
    client = ant(f"{gw.url}/w/notes/anthropic")
    message = client.messages.create(model="claude-opus-4-1", max_tokens=100, messages=ASK)
    assert message.type == "message" and message.content[0].type == "text"
    [rec] = gw.records(1)
    assert (rec["provider"], rec["model"], rec["downgraded_from"]) == (
        "openai",
        "gpt-4o-mini",
        "anthropic/claude-opus-4-1",
    )
    assert rec["input_tokens"] == message.usage.input_tokens and rec["output_tokens"] == message.usage.output_tokens


def test_a_feature_the_cheaper_api_lacks_is_refused_not_translated(gateways: Gateways) -> None:
    cap = {"daily_usd": 0.001, "on_exceed": "downgrade", "downgrade_to": "openai/gpt-4o-mini"}
    gw = gateways(env=KEYS, workflows={"notes": cap})
    client = ant(f"{gw.url}/w/notes/anthropic")
    with pytest.raises(anthropic.RateLimitError, match=r"budget_exceeded|budget exceeded"):
        client.messages.create(
            model="claude-opus-4-1",
            max_tokens=2000,
            messages=ASK,
            extra_body={"thinking": {"type": "enabled", "budget_tokens": 1024}},
        )
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["downgraded_from"]) == ("blocked", "budget_exceeded", None)


def test_a_provider_that_keeps_falling_back_shows_in_status_metrics_and_one_alert(
    gateways: Gateways, broken: ReplayServer
) -> None:
    gw = gateways(env=KEYS)  # the broken provider answers 500 to everything
    client = oa(f"{gw.url}/flaky")
    for _ in range(10):
        client.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=10)
    status = httpx.get(f"{gw.url}/-/status", trust_env=False).json()
    assert status["fallbacks"] == {"flaky": {"calls": 10, "fell_back": 10}}
    metrics = httpx.get(f"{gw.url}/metrics", trust_env=False).text
    counted = {
        line.split('reason="')[1].split('"')[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith('picometer_fallbacks_total{model="gpt-4o-mini",provider="flaky"')
    }
    # Five failures in a row open the circuit: later calls fall back at once, without trying the provider.
    assert sum(counted.values()) == 10 and set(counted) == {"server_error", "circuit_open"}
    gw.daemon.watch()
    gw.daemon.watch()
    fallbacks = [a for a in gw.daemon.alerts if a.kind == "fallback"]
    assert len(fallbacks) == 1 and "anthropic/claude-haiku-4-5" in fallbacks[0].message


ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1764500000,
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Lettuce."}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def test_a_fallback_gets_its_own_retries_and_the_client_sees_no_usage_it_did_not_ask_for(
    sim: SimServer, broken: ReplayServer, tmp_path: Path
) -> None:
    with ReplayServer() as spare:
        spare.answer_json(DOWN, 503)  # the spare's first try fails too: it gets its own second try
        spare.answer_json(ANSWER)
        spec = {"kind": "openai", "base_url": f"{spare.url}/v1", "api_key": "env:OPENAI_KEY"}
        chosen = {**providers(sim, broken), "spare": spec}
        chosen["flaky"] = {**chosen["flaky"], "fallback": ["spare/gpt-4o-mini"]}
        with Gateways(sim.url, tmp_path, providers=chosen, retry={"max_attempts": 2, "base_delay_s": 0.01}) as make:
            gw = make(env=KEYS)
            answer = oa(f"{gw.url}/flaky").chat.completions.create(model="gpt-4o-mini", messages=ASK)
            assert answer.choices[0].message.content == "Lettuce."
            [rec] = gw.records(1)
            assert (rec["provider"], rec["attempts"], rec["input_tokens"]) == ("spare", 4, 12)
            # A stream whose client did not ask for usage: the fallback is asked for it, the client never sees it.
            chosen["flaky"] = {**chosen["flaky"], "fallback": ["anthropic/claude-haiku-4-5"]}
            gw = make(env=KEYS, providers=chosen)
            chunks = list(oa(f"{gw.url}/flaky").chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True))
            assert chunks and all(c.choices and c.usage is None for c in chunks)
            [rec] = gw.records(1)
            assert rec["provider"] == "anthropic" and rec["output_tokens"] > 0 and rec["usage_source"] == "provider"


def test_a_free_providers_paid_fallback_is_held_to_the_caps(
    sim: SimServer, broken: ReplayServer, tmp_path: Path
) -> None:
    local = {"kind": "ollama", "base_url": broken.url, "fallback": ["openai/gpt-4o"]}
    chosen = {**providers(sim, broken), "local": local}
    with Gateways(sim.url, tmp_path, providers=chosen, budgets={"daily_usd": 0.000001}) as make:
        gw = make(env=KEYS)
        # Ollama's OpenAI-compatible API: the shape its paid fallback speaks too.
        with pytest.raises(openai.RateLimitError) as caught:
            oa(f"{gw.url}/local/v1").chat.completions.create(model="llama3.2", messages=ASK)
        assert caught.value.code == "budget_exceeded"
        assert broken.requests == [] and sim.sim.requests == 0


def test_when_the_provider_is_unreachable_and_so_are_its_fallbacks_the_error_names_it(
    sim: SimServer, broken: ReplayServer, tmp_path: Path
) -> None:
    dead = "http://127.0.0.1:9"
    chosen = {
        **providers(sim, broken),
        "flaky": {"kind": "openai", "base_url": dead, "api_key": "env:OPENAI_KEY", "fallback": ["anthropic/x-1"]},
        "anthropic": {"kind": "anthropic", "base_url": dead, "api_key": "env:ANTHROPIC_KEY"},
    }
    with Gateways(sim.url, tmp_path, providers=chosen, prices={"x-1": {"input": 1, "output": 1}}) as make:
        gw = make(env=KEYS)
        with pytest.raises(openai.APIStatusError) as caught:
            oa(f"{gw.url}/flaky").chat.completions.create(model="gpt-4o-mini", messages=ASK)
        assert "'flaky'" in caught.value.message and "'anthropic'" not in caught.value.message
        [rec] = gw.records(1)
        assert (rec["provider"], rec["error_type"], rec["fallback_from"]) == ("flaky", "connect_error", None)
