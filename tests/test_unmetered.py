"""Fail closed: under a dollar cap, what picometer cannot meter does not reach the provider; calls are metered
by their API shape on any provider kind; images and audio are priced per call from above, never at zero."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.oracle import independent_cost
from tests.servers import GatewayServer, SimServer

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "sort the seed packets"}]}
BATCH = {"input_file_id": "file-abc", "endpoint": "/v1/chat/completions", "completion_window": "24h"}
MakeGateway = Callable[..., GatewayServer]


def post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url, json=body, headers=headers, trust_env=False, timeout=30)


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("openai/batches", BATCH, "openai"),
        ("openai/files", {"purpose": "batch"}, "openai"),
        ("openai/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": "file-abc"}, "openai"),
        ("openai/realtime/sessions", {"model": "gpt-4o-realtime-preview"}, "openai"),
        ("openai/assistants/run", {"model": "gpt-4o"}, "openai"),
        ("anthropic/v1/messages/batches", {"requests": []}, "anthropic"),
    ],
)
def test_under_a_daily_cap_unmeterable_posts_are_refused_and_never_reach_the_provider(
    sim: SimServer, make_gateway: MakeGateway, path: str, body: dict[str, Any], shape: str
) -> None:
    gw = make_gateway(budgets={"daily_usd": 5})
    before = sim.sim.requests
    r = post(f"{gw.url}/{path}", body)
    assert r.status_code == 403
    error = r.json()["error"]
    assert (error["code"] if shape == "openai" else error["type"]) == "unmetered_endpoint"
    assert 'unmetered = "allow"' in error["message"] and path.split("/", 1)[1] in error["message"]
    assert r.headers["x-should-retry"] == "false"
    assert sim.sim.requests == before
    [rec] = gw.records(1)
    assert (rec["status"], rec["error_type"], rec["http_status"]) == ("blocked", "unmetered_endpoint", 403)
    assert rec["endpoint"] == path.split("/", 1)[1].removeprefix("v1/")


def test_reads_and_known_free_posts_pass_under_a_cap(sim: SimServer, make_gateway: MakeGateway) -> None:
    gw = make_gateway(budgets={"daily_usd": 5})
    assert httpx.get(f"{gw.url}/openai/models", trust_env=False).status_code == 200
    count = {"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "hello"}]}
    r = post(f"{gw.url}/anthropic/v1/messages/count_tokens", count)
    assert r.status_code == 200 and r.json()["input_tokens"] > 0
    models, counted = gw.records(2)
    assert models["status"] == counted["status"] == "ok"
    assert models["usage_source"] == counted["usage_source"] == "none"
    assert models["cost_usd"] == counted["cost_usd"] == 0


def test_allow_forwards_with_a_record_globally_or_per_workflow(sim: SimServer, make_gateway: MakeGateway) -> None:
    gw = make_gateway(budgets={"daily_usd": 5, "unmetered": "allow"})
    r = post(f"{gw.url}/openai/batches", BATCH)
    assert r.status_code == 200 and r.json()["object"] == "batch"
    [rec] = gw.records(1)
    assert (rec["status"], rec["endpoint"], rec["usage_source"], rec["cost_usd"]) == ("ok", "batches", "none", 0)

    per_workflow = make_gateway(budgets={"daily_usd": 5}, workflows={"nightly": {"unmetered": "allow"}})
    assert post(f"{per_workflow.url}/openai/batches", BATCH).status_code == 403
    allowed = post(f"{per_workflow.url}/openai/batches", BATCH, **{"x-picometer-workflow": "nightly"})
    assert allowed.status_code == 200
    refused, passed = per_workflow.records(2)
    assert refused["status"] == "blocked" and (passed["status"], passed["workflow"]) == ("ok", "nightly")


def test_without_a_dollar_cap_unmeterable_posts_pass(sim: SimServer, gateway: GatewayServer) -> None:
    before = sim.sim.requests
    assert post(f"{gateway.url}/openai/batches", BATCH).status_code == 200
    assert sim.sim.requests == before + 1
    [rec] = gateway.records(1)
    assert rec["usage_source"] == "none" and rec["status"] == "ok"


def test_a_workflow_cap_alone_closes_unmetered_calls_for_that_workflow(make_gateway: MakeGateway) -> None:
    gw = make_gateway(workflows={"digest": {"daily_usd": 1}})
    assert post(f"{gw.url}/openai/batches", BATCH, **{"x-picometer-workflow": "digest"}).status_code == 403
    assert post(f"{gw.url}/openai/batches", BATCH, **{"x-picometer-workflow": "other"}).status_code == 200


def test_anthropic_openai_compatible_chat_is_metered_and_priced_on_an_anthropic_provider(
    sim: SimServer, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(
        env={"ANTHROPIC_KEY": "sk-ant-real"},
        budgets={"daily_usd": 5},
        providers={"anthropic": {"kind": "anthropic", "base_url": sim.url, "api_key": "env:ANTHROPIC_KEY"}},
    )
    client = openai.OpenAI(base_url=f"{gw.url}/anthropic/v1", api_key="anything", max_retries=0)
    reply = client.chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "name three herbs"}]
    )
    assert reply.usage is not None
    seen = sim.sim.seen[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-ant-real", "the OpenAI-compatible endpoint takes a Bearer key"
    [rec] = gw.records(1)
    call = (rec["provider"], rec["endpoint"], rec["status"], rec["usage_source"])
    assert call == ("anthropic", "chat/completions", "ok", "provider")
    assert (rec["input_tokens"], rec["output_tokens"]) == (reply.usage.prompt_tokens, reply.usage.completion_tokens)
    expected = independent_cost(
        "claude-sonnet-4-6", "anthropic", {"input": rec["input_tokens"], "output": rec["output_tokens"]}
    )
    assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9) and rec["cost_usd"] > 0
    # a refusal there comes in the OpenAI shape the client reads
    paused = httpx.post(f"{gw.url}/-/pause/untagged", trust_env=False)
    assert paused.status_code == 200
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "workflow_paused"


def test_a_messages_call_to_an_openai_kind_host_is_metered_as_messages(
    sim: SimServer, make_gateway: MakeGateway
) -> None:
    gw = make_gateway(
        budgets={"daily_usd": 5},
        providers={"compat": {"kind": "openai", "base_url": sim.url, "api_key": "env:COMPAT_KEY"}},
        env={"COMPAT_KEY": "sk-compat"},
    )
    client = anthropic.Anthropic(base_url=f"{gw.url}/compat", api_key="anything", max_retries=0)
    msg = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": "name a herb"}],
        extra_headers={"x-sim-cached": "3"},
    )
    assert sim.sim.seen[-1].headers["x-api-key"] == "sk-compat"
    [rec] = gw.records(1)
    assert (rec["endpoint"], rec["status"], rec["usage_source"]) == ("messages", "ok", "provider")
    assert rec["input_tokens"] == msg.usage.input_tokens + 3 and rec["cached_input_tokens"] == 3
    assert rec["output_tokens"] == msg.usage.output_tokens and rec["cost_usd"] > 0


def test_images_are_priced_from_the_answer_and_held_against_the_cap(sim: SimServer, make_gateway: MakeGateway) -> None:
    gw = make_gateway(budgets={"daily_usd": 0.4})
    ask = {"model": "gpt-image-1", "prompt": "a ripe tomato", "quality": "high", "size": "1024x1024"}
    answers = [post(f"{gw.url}/openai/images/generations", ask) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["error"]["code"] == "budget_exceeded"
    made = gw.records(3)
    for answer, rec in zip(answers[:2], made, strict=False):
        u = answer.json()["usage"]
        # openai.com/api/pricing, gpt-image-1: text input $5, image output $40 per 1M tokens
        expected = (u["input_tokens"] * 5 + u["output_tokens"] * 40) / 1e6
        assert (rec["endpoint"], rec["status"], rec["usage_source"]) == ("images/generations", "ok", "provider")
        assert (rec["input_tokens"], rec["output_tokens"]) == (u["input_tokens"], u["output_tokens"]) == (4, 4160)
        assert rec["cost_usd"] == pytest.approx(expected, rel=1e-9)
        assert float(answer.headers["x-picometer-cost-usd"]) == pytest.approx(expected, rel=1e-6)
    assert made[2]["status"] == "blocked"
